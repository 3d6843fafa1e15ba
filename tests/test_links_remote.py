"""Links between tasks of two nodes (``Task.link`` across nodes, TASK_LINK and
TASK_UNLINK on the wire): the propagation rules of docs/supervision.md across the
network, a lost node as an abnormal end (a crash, and a partition noticed by
``peer_timeout``), ``unlink`` ahead of a later exit, the per-peer bound, and a
peer's bad link messages; on the virtual network under the autojump clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
import trio
import trio.testing
from fault_scenarios import DETECTION, LIMITS
from nodes import connection
from supervision_helpers import WAIT, Nodes, open_nodes, use
from trio.testing import MockClock

from triopycos import RPS, MonitorStatus, PeerLost, Pycos, Task
from triopycos.protocol.messages import Kind
from triopycos.services.peer import PeerConnection

LATENCY = 0.01


@dataclass
class Pair:
    nodes: Nodes
    a: Pycos
    b: Pycos

    def conn(self, node: Pycos, other: Pycos) -> PeerConnection:
        return connection(node, other)


@asynccontextmanager
async def pair(**kwargs: Any) -> AsyncIterator[Pair]:
    async with open_nodes(7) as nodes:
        with trio.fail_after(WAIT):
            a = await nodes.open("a", limits=LIMITS, **kwargs)
            b = await nodes.open("b", limits=LIMITS, **kwargs)
            nodes.net.set_link(a, b, latency=LATENCY)
            assert await a.peer(b.location) == 0
            yield Pair(nodes, a, b)


async def waits(task: Task) -> Any:
    """Runs until terminated, or returns the first message it gets."""
    return await task.receive()


async def obeys(task: Task) -> str:
    """Raises on "fail", returns on "return"."""
    while True:
        message = await task.receive()
        if message == "fail":
            raise ValueError("told to fail")
        if message == "return":
            return "done"


def obeys_gen(task: Task) -> Generator[Any, Any, str]:
    """``obeys`` as a pycos generator task."""
    while True:
        message = yield task.receive()
        if message == "fail":
            raise ValueError("told to fail")
        if message == "return":
            return "done"


async def trapper(task: Task) -> MonitorStatus:
    """Traps exits and returns the first one it receives."""
    assert task.trap_exits(True) == 0
    status: MonitorStatus = await task.receive()
    return status


async def watch(task: Task, target: Task) -> MonitorStatus:
    assert await task.monitor(target) == 0
    status: MonitorStatus = await task.receive()
    return status


def remote(node: Pycos, fn: Callable[..., Any], name: str) -> Task:
    """A task on ``node`` registered as ``name`` (to locate it from the other)."""
    task = node.spawn(fn)
    assert task.register(name) == 0
    return task


async def linked(node: Pycos, name: str, body: Callable[..., Any]) -> tuple[Task, Task]:
    """A task on ``node`` running ``body`` after linking with the task registered as
    ``name`` on the other node; returns (that task, the reference it linked)."""
    got: list[Task] = []
    ready = trio.Event()

    async def linker(task: Task) -> Any:
        ref = await Task.locate(name, timeout=5)
        assert ref is not None and ref.location != node.location  # on the other node
        assert await task.link(ref) == 0
        got.append(ref)
        ready.set()
        return await body(task)

    task = node.spawn(linker)
    await ready.wait()
    return task, got[0]


async def settle() -> None:
    await trio.sleep(10 * LATENCY)


@pytest.mark.parametrize("body", [obeys, obeys_gen], ids=["async", "generator"])
async def test_a_remote_partner_that_raises_terminates_the_local_task(
    autojump_clock: MockClock, body: Callable[..., Any]
) -> None:
    async with pair() as p:
        b_task = remote(p.b, body, "partner")
        a_task, _ = await linked(p.a, "partner", waits)
        a_watch = p.a.spawn(watch, a_task)
        await settle()
        assert p.a._remote.links.held(p.b._node_id) == 1
        assert p.b._remote.links.held(p.a._node_id) == 1
        b_task.send("fail")
        assert (await a_watch.finish()).type is GeneratorExit
        assert not a_task.is_alive()
        await settle()
        assert p.a._remote.links.held(p.b._node_id) == 0
        assert p.b._remote.links.held(p.a._node_id) == 0


async def test_a_local_task_that_raises_terminates_the_remote_partner(
    autojump_clock: MockClock,
) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")
        b_watch = p.b.spawn(watch, b_task)

        async def fails(task: Task) -> None:
            await task.receive()
            raise ValueError("boom")

        a_task, _ = await linked(p.a, "partner", fails)
        a_task.send("go")
        assert (await b_watch.finish()).type is GeneratorExit
        await settle()
        assert p.b._remote.links.held(p.a._node_id) == 0


async def test_terminate_spreads_across_and_a_return_does_not(autojump_clock: MockClock) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")
        a_task, _ = await linked(p.a, "partner", waits)
        b_watch = p.b.spawn(watch, b_task)
        a_task.terminate()
        assert (await b_watch.finish()).type is GeneratorExit

        b_task = remote(p.b, obeys, "returner")
        a_task, _ = await linked(p.a, "returner", waits)
        b_task.send("return")
        assert await b_task.finish() == "done"
        await settle()
        assert a_task.is_alive()  # a return spreads nothing
        assert p.a._remote.links.held(p.b._node_id) == 0  # but the link is gone
        a_task.terminate()


async def test_trapping_tasks_receive_the_partners_exit_on_both_sides(
    autojump_clock: MockClock,
) -> None:
    async with pair() as p:
        b_task = remote(p.b, obeys, "partner")
        a_task, ref = await linked(p.a, "partner", trapper)
        b_task.send("fail")
        status = await a_task.finish()
        assert isinstance(status, MonitorStatus)
        assert status.info == ref and status.type is ValueError
        assert "told to fail" in str(status.value)

        # The other way round: the remote partner traps, the local task returns.
        b_trap = remote(p.b, trapper, "trapper")
        await settle()
        a_task, _ = await linked(p.a, "trapper", obeys)
        a_task.send("return")
        status = await b_trap.finish()
        assert status.type is StopIteration and status.value == "done"
        assert status.info == a_task


async def test_unlink_is_ahead_of_a_later_exit(autojump_clock: MockClock) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")

        async def unlinks_then_fails(task: Task) -> None:
            ref = await Task.locate("partner", timeout=5)
            assert ref is not None
            assert await task.link(ref) == 0
            assert await task.unlink(ref) == 0
            assert await task.unlink(ref) == -1  # not linked any more
            raise ValueError("after unlink")

        await p.a.spawn(unlinks_then_fails).finish()
        await settle()
        assert b_task.is_alive()
        assert p.a._remote.links.held(p.b._node_id) == 0
        assert p.b._remote.links.held(p.a._node_id) == 0

        # Unlinked on the other side: the remote task's end does not reach it.
        a_task, ref = await linked(p.a, "partner", waits)
        assert await a_task.unlink(ref) == 0
        b_task.terminate()
        await settle()
        assert a_task.is_alive()
        a_task.terminate()


async def test_a_crashed_node_is_peer_lost_for_the_local_partner(
    autojump_clock: MockClock,
) -> None:
    async with pair() as p:
        remote(p.b, waits, "one")
        remote(p.b, waits, "two")
        plain, _ = await linked(p.a, "one", waits)
        trapping, ref = await linked(p.a, "two", trapper)
        plain_watch = p.a.spawn(watch, plain)
        p.nodes.net.crash(p.b)
        assert (await plain_watch.finish()).type is GeneratorExit
        status = await trapping.finish()
        assert status.info == ref and status.type is PeerLost
        assert p.a._remote.links.held(p.b._node_id) == 0


async def test_a_partition_ends_both_sides_after_peer_timeout(autojump_clock: MockClock) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")
        a_task, _ = await linked(p.a, "partner", waits)
        a_watch, b_watch = p.a.spawn(watch, a_task), p.b.spawn(watch, b_task)
        start = trio.current_time()
        p.nodes.net.partition(p.a, p.b)
        assert (await a_watch.finish()).type is GeneratorExit
        assert (await b_watch.finish()).type is GeneratorExit
        assert trio.current_time() - start <= DETECTION


async def test_links_that_cannot_be_made(autojump_clock: MockClock) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")

        async def tries(task: Task) -> list[int]:
            ref = await Task.locate("partner", timeout=5)
            assert ref is not None
            results = [await ref.link(task), ref.trap_exits(True)]  # a reference links nothing
            b_task.terminate()
            await trio.sleep(1)
            results.append(await task.link(ref))  # ended: -1
            return results

        assert await p.a.spawn(tries).finish() == [-1, -1, -1]
        assert p.a._remote.links.held(p.b._node_id) == 0


async def test_a_peer_may_hold_only_so_many_links(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    limits = replace(LIMITS, max_monitors_per_peer=2)
    async with open_nodes(8) as nodes:
        a = await nodes.open("a", limits=limits)
        b = await nodes.open("b", limits=limits)
        assert await a.peer(b.location) == 0
        remote(b, waits, "partner")

        results: list[int] = []

        async def links(task: Task) -> None:
            ref = await Task.locate("partner", timeout=5)
            assert ref is not None
            results.append(await task.link(ref))
            await task.receive()  # stays linked

        with caplog.at_level(logging.WARNING, logger="triopycos.remote"):
            for _ in range(3):
                a.spawn(links)
                await trio.sleep(1)
        assert results == [0, 0, -1]
        assert b.statistics().monitors_refused == 1
        assert a._remote.links.held(b._node_id) == 2  # the refused one was undone
        assert "links here (Limits.max_monitors_per_peer)" in caplog.text


async def test_a_peers_bad_link_messages(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair() as p:
        b_task = remote(p.b, waits, "partner")
        conn = p.conn(p.a, p.b)
        mine = p.a.spawn(waits)
        with use(p.a):
            ref = await Task.locate("partner", timeout=5)
        assert ref is not None
        # A peer links only its own tasks: naming one of b's own tasks is refused.
        assert await conn.request_raw(Kind.TASK_LINK, b_task._task_id, ref, timeout=5) == -1
        # Unknown task: -1.
        assert await conn.request_raw(Kind.TASK_LINK, 2**40, mine, timeout=5) == -1
        # An UNLINK of a link that does not exist, or naming another node's task, is
        # dropped; the session goes on.
        conn.send_raw([Kind.TASK_UNLINK, b_task._task_id, mine, None])
        conn.send_raw([Kind.TASK_UNLINK, b_task._task_id, ref, MonitorStatus(ref, ValueError, "x")])
        await settle()
        assert b_task.is_alive() and not conn.closed
        # A real link, then an exit whose type is not a type and whose text is
        # hostile: the task is terminated, and the log line is escaped.
        assert await conn.request_raw(Kind.TASK_LINK, b_task._task_id, mine, timeout=5) == 0
        bad = MonitorStatus(mine, "\x1b[31mFORGED\nline", "v")
        with caplog.at_level(logging.INFO):
            conn.send_raw([Kind.TASK_UNLINK, b_task._task_id, mine, bad])
            await settle()
        assert not b_task.is_alive() and not conn.closed
        said = [r.getMessage() for r in caplog.records if "terminated: linked" in r.getMessage()]
        assert len(said) == 1 and "FORGED" in said[0]
        assert "\x1b" not in said[0] and "\n" not in said[0]
        # A malformed UNLINK or LINK is the peer's: dropped (logged once), session on.
        caplog.clear()
        conn.send_raw([Kind.TASK_UNLINK, 1, mine, "not a status"])
        conn.send_raw([Kind.TASK_UNLINK, 1, "me", None])
        assert await conn.request_raw(Kind.TASK_LINK, 1, "me", timeout=5) == -1
        await settle()
        assert not conn.closed and p.b.peers() == [p.a.location]
        said = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(said) == 2, said  # once per kind
        mine.terminate()


async def test_an_rps_call_links_the_new_task_with_the_callers_task(
    autojump_clock: MockClock,
) -> None:
    """``RPS._call(..., link=task)``: the serving node links the task it starts with
    the caller's task before it runs; a peer may name only its own tasks."""
    async with pair() as p:
        with use(p.b):
            assert RPS(obeys, name="svc").register() == 0
        anchor = p.a.spawn(trapper)
        await settle()
        with use(p.a):
            rps = await RPS.locate("svc", timeout=5)
            assert rps is not None
            child = await rps._call((), {}, link=anchor)
        assert child is not None
        assert p.a._remote.links.held(p.b._node_id) == 1
        assert p.b._remote.links.held(p.a._node_id) == 1
        child.send("fail")
        status = await anchor.finish()
        assert status.info == child and status.type is ValueError

        # Naming a task of another node than the caller's: the call fails whole.
        conn = p.conn(p.a, p.b)
        theirs = p.b.spawn(waits)
        before = p.b.statistics().tasks_started
        reply = await conn.request_raw(Kind.RPS_CALL, "svc", [], {}, [], [theirs], timeout=5)
        assert isinstance(reply, Exception) and "links refused" in str(reply)
        assert p.b.statistics().tasks_started == before
        theirs.terminate()


@pytest.mark.parametrize("partner_ended", [True, False])
async def test_a_cancelled_link_leaves_no_half_link(
    autojump_clock: MockClock, partner_ended: bool
) -> None:
    """``link`` cancelled while its TASK_LINK is under way: whatever the partner's
    node answered, no side keeps the link, so no later loss or exit fires it."""
    async with pair() as p:
        p.nodes.net.set_link(p.a, p.b, latency=0.05)
        b_task = remote(p.b, obeys, "partner")
        results: list[object] = []

        async def linker(task: Task) -> None:
            ref = await Task.locate("partner", timeout=5)
            assert ref is not None
            if partner_ended:
                b_task.send("return")
                await trio.sleep(1)
            with trio.move_on_after(0.06):  # less than the 0.1 s round trip
                results.append(await task.link(ref))
            results.append("went on")
            await task.receive()

        a_task = p.a.spawn(linker)
        await trio.sleep(3)
        assert results == ["went on"] and a_task.is_alive()
        assert p.a._remote.links.held(p.b._node_id) == 0
        assert p.b._remote.links.held(p.a._node_id) == 0
        if not partner_ended:
            b_task.send("fail")  # its end does not reach a_task: no link
        p.conn(p.a, p.b).close()
        await trio.sleep(2 * DETECTION)
        assert a_task.is_alive()
        a_task.terminate()


async def test_a_second_link_while_the_first_is_asking_gets_the_same_answer(
    autojump_clock: MockClock,
) -> None:
    limits = replace(LIMITS, max_monitors_per_peer=1)
    async with open_nodes(9) as nodes:
        a = await nodes.open("a", limits=limits)
        b = await nodes.open("b", limits=limits)
        nodes.net.set_link(a, b, latency=LATENCY)
        assert await a.peer(b.location) == 0
        remote(b, waits, "partner")
        refs: list[Task] = []

        async def first(task: Task) -> None:
            ref = await Task.locate("partner", timeout=5)
            assert ref is not None
            refs.append(ref)
            assert await task.link(ref) == 0
            await task.receive()  # holds the one link b allows a

        a.spawn(first)
        await settle()
        results: list[int] = []

        async def twice(task: Task) -> None:
            # Two link() calls of one task at once, the second while the first is
            # asking: b refuses (its bound is reached), and both say so.
            async with trio.open_nursery() as nursery:
                for _ in range(2):

                    async def one() -> None:
                        results.append(await task.link(refs[0]))

                    nursery.start_soon(one)
            await task.receive()

        a.spawn(twice)
        await settle()
        assert results == [-1, -1]
        assert a._remote.links.held(b._node_id) == 1
