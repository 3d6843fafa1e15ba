"""What a node owes its peer is never dropped in silence (review findings): a reply
that finds the outbox full closes the connection (the requester fails at once and
its watchers hear PeerLost) instead of leaving the request waiting for ever on an
open connection; and a peer's malformed messages of unknown kinds are logged once
in all, not once per kind number it makes up.  Virtual network, autojump clock."""

from __future__ import annotations

import logging

import pytest
import trio
from nodes import connection
from supervision_helpers import Lives, Nodes, make_worker, open_nodes, use
from trio.testing import MockClock

from triopycos import RPS, ChildSpec, Limits, Pycos, Supervisor, Task
from triopycos.protocol.messages import Kind

LIMITS = Limits(
    peer_timeout=6.0, reconnect_delay=0.5, connect_timeout=3.0, max_outbox_bytes=64 * 1024
)
PAYLOAD = b"x" * 8182  # an 8192-byte frame: 8 of them fill the 64 KiB outbox


async def sink(task: Task) -> None:
    task.set_daemon()
    assert task.register("sink") == 0
    while True:
        await task.receive()


async def flooded(nodes: Nodes, lives: Lives) -> tuple[Pycos, Pycos, RPS]:
    """Nodes a and b, b serving the RPS "svc"; b streams to a faster than the b -> a
    link carries (bounded: 60 s), so b's outbox to a stays full."""
    a = await nodes.open("a", limits=LIMITS)
    b = await nodes.open("b", limits=LIMITS)
    nodes.net.set_link(b, a, latency=0.001, bandwidth=10_000, both_ways=False)
    nodes.net.set_link(a, b, latency=0.001, both_ways=False)
    assert await a.peer(b.location) == 0
    with use(b):
        assert RPS(make_worker(lives), name="svc").register() == 0
    a.spawn(sink)
    with use(a):
        rps = await RPS.locate("svc", timeout=5)
    assert rps is not None

    async def producer(task: Task) -> None:
        task.set_daemon()
        ref = await Task.locate("sink", timeout=5)
        assert ref is not None
        for _ in range(600):
            ref.send(PAYLOAD)
            await trio.sleep(0.1)

    b.spawn(producer)
    await trio.sleep(10)
    return a, b, rps


async def test_a_reply_that_finds_the_outbox_full_closes_the_connection(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lives = Lives()
    async with open_nodes(5) as nodes:
        a, _, rps = await flooded(nodes, lives)

        async def caller() -> Task | None:
            return await rps("w")

        with caplog.at_level(logging.WARNING, logger="triopycos.peer"):
            with trio.fail_after(30):
                result = await a.spawn(caller).finish()
        assert result is None  # failed at once, not left waiting
        assert "a reply could not be queued" in caplog.text
        a.terminate()


async def test_a_supervisor_is_not_frozen_by_a_reply_the_peer_could_not_queue(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    async with open_nodes(5) as nodes:
        a, _, rps = await flooded(nodes, lives)
        with use(a):
            sup = Supervisor([ChildSpec("w", rps, ("w",))], max_restarts=100, max_seconds=1)
        await trio.sleep(60)
        # Whatever the flood did to the connection (an owed reply or PONG that found
        # b's outbox full closed it), no start was left waiting: the supervisor
        # runs at most one child and answers terminate() (before the fix, its
        # shielded start waited for ever and terminate() did nothing).
        assert sup.task.is_alive()
        assert lives.running().get("w", 0) <= 1
        assert sup.terminate() == 0
        with trio.fail_after(60):
            await sup.task.finish()
        await trio.sleep(10)
        assert lives.running() == {}
        a.terminate()


async def test_malformed_messages_of_made_up_kinds_are_logged_once_in_all(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_nodes(3) as nodes:
        a = await nodes.open("a")
        b = await nodes.open("b")
        assert await a.peer(b.location) == 0
        conn, at_b = connection(a, b), connection(b, a)
        with caplog.at_level(logging.WARNING, logger="triopycos.peer"):
            for i in range(2000):
                conn.send_raw([1000 + i])
                if i % 500 == 0:
                    await trio.sleep(0.01)
            conn.send_raw([Kind.TASK_SEND, "not an id", "m"])
            conn.send_raw([Kind.TASK_SEND, "again", "m"])
            await trio.sleep(1)
        lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(lines) == 2, lines  # the made-up kinds once, TASK_SEND once
        assert len(at_b._logged) <= 4 and not at_b.closed
