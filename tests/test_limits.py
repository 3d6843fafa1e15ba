"""Bounded mailboxes and parked requests (issue 17, item 5): ``Limits.max_mailbox``
and ``Limits.max_parked_requests``, what a refused message or request does, how it
is counted and logged.  On one node and on the virtual network, under the autojump
clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from triopycos import Channel, Limits, Location, Pycos, Task, open_pycos
from triopycos.protocol.messages import ChannelDeliver, Locate, TaskFinish
from triopycos.services.peer import PeerConnection
from triopycos.testing import VirtualNetwork


def local_node(limits: Limits | None = None) -> Any:
    return open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False, limits=limits)


async def never_receives(task: Task) -> None:
    task.set_daemon()
    task.register("full")
    await trio.sleep_forever()


def full_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]


# -- mailboxes --------------------------------------------------------------------------


async def test_a_full_mailbox_refuses_counts_and_says_so_once(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    async with local_node(Limits(max_mailbox=3)) as node:
        task = node.spawn(never_receives)
        other = node.spawn(never_receives)
        assert [task.send(i) for i in range(5)] == [0, 0, 0, -1, -1]
        assert await task.deliver("one more") == 0
        assert [other.send(i) for i in range(4)] == [0, 0, 0, -1]
        assert node.statistics().messages_refused == 4
        warnings = full_warnings(caplog)
        assert len(warnings) == 2  # once per task
        assert "max_mailbox" in warnings[0]


async def test_a_mailbox_takes_messages_again_once_drained(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with local_node(Limits(max_mailbox=2)) as node:
        go = trio.Event()

        async def slow(task: Task) -> list[Any]:
            await go.wait()
            return [await task.receive() for _ in range(3)]

        task = node.spawn(slow)
        assert [task.send(i) for i in range(3)] == [0, 0, -1]
        go.set()
        await trio.testing.wait_all_tasks_blocked()  # it took both, waits for a third
        assert task.send(2) == 0
        assert await task.finish() == [0, 1, 2]


async def test_the_default_bound_is_finite_and_none_is_unbounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bound = Limits().max_mailbox
    assert bound == 1_000_000
    async with local_node() as node:
        task = node.spawn(never_receives)
        assert all(task.send(i) == 0 for i in range(bound))
        assert task.send("over") == -1
    async with local_node(Limits(max_mailbox=None)) as node:
        task = node.spawn(never_receives)
        assert all(task.send(i) == 0 for i in range(bound + 1))


def test_bad_limits() -> None:
    bad_bounds: list[Any] = [0, -1, 1.5, "10"]
    for bad in bad_bounds:
        with pytest.raises(ValueError, match="max_mailbox"):
            Limits(max_mailbox=bad)
    bad_caps: list[Any] = [-1, None, 2.0]
    for bad in bad_caps:
        with pytest.raises(ValueError, match="max_parked_requests"):
            Limits(max_parked_requests=bad)


async def test_a_full_remote_mailbox_drops_sends_and_refuses_delivers(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    limits = Limits(max_mailbox=2)
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=limits) as a,
        net.open_pycos(name="b", limits=limits) as b,
    ):
        assert await b.peer(a.location) == 0
        a.spawn(never_receives)

        async def sender() -> tuple[list[int], int]:
            target = await Task.locate("full", a.location, timeout=5)
            assert target is not None
            sent = [target.send(i) for i in range(4)]  # queued here: dropped there
            return sent, await target.deliver("one more", timeout=5)

        assert await b.spawn(sender).finish() == ([0, 0, 0, 0], 0)
        assert a.statistics().messages_refused == 3  # counted where refused
        assert b.statistics().messages_refused == 0
        assert len(full_warnings(caplog)) == 1


async def test_channel_fan_out_skips_a_full_subscriber_and_keeps_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with local_node(Limits(max_mailbox=1)) as node:
        go = trio.Event()

        async def reader(task: Task) -> list[Any]:
            await go.wait()
            return [await task.receive() for _ in range(2)]

        full, free = node.spawn(reader), node.spawn(reader)
        channel = Channel("news")
        assert await channel.subscribe(full) == 0
        assert await channel.subscribe(free) == 0
        assert full.send("direct") == 0  # its mailbox is full now
        assert channel.send("first") == 0
        assert free.send("second") == -1  # free is full now too
        assert await channel.deliver("refused by both") == 0
        go.set()
        await trio.testing.wait_all_tasks_blocked()  # both took one, wait for another
        assert await channel.deliver("last") == 2  # both still subscribed
        assert await full.finish() == ["direct", "last"]
        assert await free.finish() == ["first", "last"]
        assert node.statistics().messages_refused == 4


async def test_a_status_task_with_a_full_mailbox_stays_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=Limits(max_mailbox=1)) as a,
        net.open_pycos(name="b") as b,
        net.open_pycos(name="c") as c,
    ):
        go = trio.Event()

        async def statuses(task: Task) -> list[str]:
            await go.wait()
            return [(await task.receive()).name for _ in range(2)]

        watcher = a.spawn(statuses)
        a.peer_status(watcher)
        assert await b.peer(a.location) == 0
        assert await a.locate("b", timeout=5) == b.location  # its Online fills the mailbox
        assert await c.peer(a.location) == 0
        assert await a.locate("c", timeout=5) == c.location  # its Online is refused
        go.set()
        await trio.testing.wait_all_tasks_blocked()
        assert await b.close_peer(a.location) == 0  # still told
        with trio.fail_after(60):
            assert await watcher.finish() == ["b", "b"]
        assert a.statistics().messages_refused == 1


# -- parked requests ------------------------------------------------------------------


async def raw_locate(conn: PeerConnection, name: str, wait: float) -> Any:
    return await conn.request(Locate("task", name, wait), timeout=wait + 1)


async def test_parked_requests_are_capped_per_peer(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """Requests that wait at ``a`` (a locate of a name not there yet, a finish of a
    running task, a channel deliver waiting for subscribers): at most two from ``b``
    at once; one more is answered at once with its failure value and counted; once
    one is answered, there is room again.  Another peer has its own count."""
    limits = Limits(max_parked_requests=2)
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=limits) as a,
        net.open_pycos(name="b") as b,
        net.open_pycos(name="c") as c,
    ):
        assert await b.peer(a.location) == 0
        assert await c.peer(a.location) == 0
        conn = connection(b, a.location)
        running = a.spawn(never_receives)
        with current(a):
            assert Channel("empty").register() == 0
        answers: dict[str, tuple[Any, float]] = {}

        async def timed(label: str, request: Any) -> None:
            start = trio.current_time()
            answers[label] = (await request, trio.current_time() - start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timed, "locate", raw_locate(conn, "later", 10))
            finish = conn.request(TaskFinish(running._task_id, 20), timeout=21)
            nursery.start_soon(timed, "finish", finish)
            await trio.testing.wait_all_tasks_blocked()
            assert connection(a, b.location).parked == 2
            await timed("refused locate", raw_locate(conn, "later", 10))
            deliver = conn.request(ChannelDeliver("empty", "m", 10, 1), timeout=11)
            await timed("refused deliver", deliver)
            await timed("other peer", raw_locate(connection(c, a.location), "later", 1))
            a.spawn(registers_later)  # the parked locate is answered
            await trio.testing.wait_all_tasks_blocked()
            await timed("room again", raw_locate(conn, "nobody", 1))
            running.terminate()  # the parked finish is answered
        assert answers["refused locate"] == (None, 0)
        assert answers["refused deliver"] == (0, 0)
        assert answers["other peer"] == (None, 1)  # parked at a, not refused
        assert answers["locate"][0] is not None
        assert answers["room again"] == (None, 1)
        assert answers["finish"][0] is None and answers["finish"][1] < 20
        assert a.statistics().messages_refused == 2
        said = [r.getMessage() for r in caplog.records if "max_parked_requests" in r.getMessage()]
        assert len(said) == 1
        await trio.testing.wait_all_tasks_blocked()
        assert connection(a, b.location).parked == 0


async def registers_later(task: Task) -> None:
    task.set_daemon()
    task.register("later")
    await trio.sleep_forever()


# -- helpers ----------------------------------------------------------------------------


def connection(node: Pycos, location: Location) -> PeerConnection:
    assert node._peers is not None
    conn = node._peers.find(location)
    assert conn is not None
    return conn


class current:
    """Make ``node`` the current node for constructing a channel in a test body."""

    def __init__(self, node: Pycos) -> None:
        from triopycos._context import current_node_var

        self._var = current_node_var
        self._node = node

    def __enter__(self) -> None:
        self._token = self._var.set(self._node)

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._token)
