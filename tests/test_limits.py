"""Bounded mailboxes and parked requests (issue 17, item 5): ``Limits.max_mailbox``
and ``Limits.max_parked_requests``, what a refused message or request does, how it
is counted and logged.  On one node and on the virtual network, under the autojump
clock."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
import trio.testing
from nodes import connection, current

from triopycos import RPS, Channel, Limits, Location, Pycos, PycosError, Task, open_pycos
from triopycos.protocol.codec import Ref
from triopycos.protocol.messages import (
    ChannelDeliver,
    ChannelSubscribe,
    Kind,
    Locate,
    RpsCall,
    TaskFinish,
    TaskMonitor,
)
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
        with pytest.raises(ValueError, match="max_monitors_per_peer"):
            Limits(max_monitors_per_peer=bad)
    for name in ("max_dials", "max_dials_per_peer", "max_results_per_peer"):
        for bad in [0, *bad_caps]:
            with pytest.raises(ValueError, match=name):
                Limits(**{name: bad})
    with pytest.raises(ValueError, match="max_result_bytes_per_peer"):
        Limits(max_result_bytes_per_peer=0)


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


# -- monitors and subscriptions a peer holds --------------------------------------------


async def keeper(task: Task) -> None:
    task.set_daemon()
    await task.receive()


def fake_task(node: Pycos, owner: bytes, task_id: int, where: Location) -> Task:
    """A reference, held on ``node``, to task ``task_id`` of node ``owner``."""
    return Task._reference(node, Ref("task", owner, task_id, "m", where))


async def test_a_peers_monitor_and_subscribe_requests_cost_linear_work(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: each request scanned the task's monitors (a list), so 20,000
    of them (1.4 MB from a peer) took 26 s of CPU in the node's trio thread.  Now a
    membership test is a lookup: the comparisons are counted, not timed."""
    n = 2000
    comparisons = 0
    task_eq, channel_eq = Task.__eq__, Channel.__eq__

    def counting(original: Any) -> Any:
        def eq(self: Any, other: object) -> bool:
            nonlocal comparisons
            comparisons += 1
            return bool(original(self, other))

        return eq

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        target = a.spawn(keeper)
        with current(a):
            assert Channel("feed").register() == 0
        assert await b.peer(a.location) == 0
        conn = connection(b, a.location)
        monkeypatch.setattr(Task, "__eq__", counting(task_eq))
        monkeypatch.setattr(Channel, "__eq__", counting(channel_eq))
        for i in range(1, n + 1):
            monitor = fake_task(b, b._node_id, i, b.location)
            conn.send_raw([Kind.TASK_MONITOR, 10**6 + i, target._task_id, monitor])
            conn.send_raw([Kind.CHANNEL_SUBSCRIBE, 2 * 10**6 + i, "feed", monitor, None])
            if i % 500 == 0:
                await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.undo()
        channel = a._names.by_kind["channel"]["feed"]
        assert isinstance(channel, Channel)
        assert target._monitors is not None and len(target._monitors) == n
        assert len(channel._subscribers) == n
        assert comparisons < 4 * n, f"{comparisons} comparisons for {2 * n} requests"


async def test_monitors_and_subscriptions_a_peer_holds_are_capped(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """``Limits.max_monitors_per_peer``: what one peer may make the node hold.  One
    more is refused (-1; an RPS call whose monitors do not fit fails whole), counted
    and logged once; a task that ends gives its room back; another peer, and the
    node's own code, have their own count."""
    limits = Limits(max_monitors_per_peer=3)
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=limits) as a,
        net.open_pycos(name="b") as b,
        net.open_pycos(name="c") as c,
    ):
        long_lived = [a.spawn(keeper) for _ in range(3)]
        with current(a):
            assert Channel("feed").register() == 0
            assert RPS(quick).register() == 0
        assert await b.peer(a.location) == 0
        assert await c.peer(a.location) == 0
        conn = connection(b, a.location)

        async def monitor(target: Task, task_id: int) -> Any:
            watcher = fake_task(b, b._node_id, task_id, b.location)
            return await conn.request(TaskMonitor(target._task_id, watcher))

        async def subscribe(task_id: int) -> Any:
            subscriber = fake_task(b, b._node_id, task_id, b.location)
            return await conn.request(ChannelSubscribe("feed", subscriber, None))

        assert [await monitor(t, 1) for t in long_lived[:2]] == [0, 0]
        assert await monitor(long_lived[0], 1) == 0  # the same monitor again: no cost
        assert await subscribe(1) == 0
        assert await monitor(long_lived[2], 1) == -1
        assert await subscribe(2) == -1
        calls = [
            await conn.request(RpsCall("quick", [], {}, [fake_task(b, b._node_id, 9, b.location)]))
        ]
        assert isinstance(calls[0], PycosError) and "max_monitors_per_peer" in str(calls[0])
        assert a.statistics().monitors_refused == 3
        assert a._remote.holds.asked(b._node_id) == 3
        # Another peer, and the node's own code, are not refused.
        other = fake_task(c, c._node_id, 1, c.location)
        c_conn = connection(c, a.location)
        assert await c_conn.request(TaskMonitor(long_lived[2]._task_id, other)) == 0
        assert long_lived[2].notify(fake_task(a, b._node_id, 7, b.location)) == 0
        # A task that ends gives its monitors' room back.
        long_lived[1].terminate()
        await trio.testing.wait_all_tasks_blocked()
        assert a._remote.holds.asked(b._node_id) == 2
        assert await monitor(long_lived[2], 1) == 0
        assert a.statistics().monitors_refused == 3
    said = [r.getMessage() for r in caplog.records if "max_monitors_per_peer" in r.getMessage()]
    assert len(said) == 2  # once by the node for the peer, once by the RPS call's refusal


async def quick() -> int:
    return 1


async def test_a_lost_peers_monitors_and_subscriptions_leave_long_lived_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When a peer is lost, the monitors living on it, and those it asked for
    (wherever they live), leave the node's tasks and channels at once: a task that
    runs for days would otherwise keep them (and their memory) forever."""
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="c") as c,
    ):
        long_lived = a.spawn(keeper)
        with current(a):
            feed = Channel("feed")
            assert feed.register() == 0
        assert await c.peer(a.location) == 0
        c_task = Task._reference(a, c.spawn(keeper)._triopycos_ref_())
        assert long_lived.notify(c_task) == 0  # the node's own code: stays
        assert await feed.subscribe(c_task) == 0
        async with net.open_pycos(name="b") as b:
            assert await b.peer(a.location) == 0
            conn = connection(b, a.location)
            on_b = [fake_task(b, b._node_id, i, b.location) for i in (1, 2)]
            on_c = fake_task(b, c._node_id, 3, c.location)  # asked for by b, lives on c
            for watcher in (*on_b, on_c):
                assert await conn.request(TaskMonitor(long_lived._task_id, watcher)) == 0
                assert await conn.request(ChannelSubscribe("feed", watcher, None)) == 0
            assert long_lived._monitors is not None and len(long_lived._monitors) == 4
            assert len(feed._subscribers) == 4
            lost = b._node_id
            net.crash(b)  # (this block ends at its next checkpoint)
            await trio.sleep_forever()
        await trio.testing.wait_all_tasks_blocked()
        assert a.peers() == [c.location]
        # Only what the node's own code asked for, living on c (still here), is left.
        assert [m._node_id for m in long_lived._monitors] == [c._node_id]
        assert [s._node_id for s in feed._subscribers] == [c._node_id]
        assert a._remote.holds.held(lost) == 0
        assert a._remote.holds.asked(lost) == 0
        assert a._remote.holds.held(c._node_id) == 2


# -- on-demand dials ----------------------------------------------------------------------


async def test_a_peers_messages_cannot_make_the_node_dial_many_places_at_once(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """Review finding: monitors of an ended task naming 2,000 made-up nodes made the
    node dial 2,000 locations at once (over TCP: past the usual 1,024 descriptors,
    and then its own accept fails).  Whatever a peer asks for (monitors' statuses,
    channel messages to subscribers it subscribed), at most
    ``Limits.max_dials_per_peer`` dials run for it at once; the rest are refused,
    counted, and said within a log quota."""
    n = 2000
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="victim") as victim,
        net.open_pycos(name="peer") as peer,
    ):
        ended = victim.spawn(quick)
        await ended.finish()
        running = victim.spawn(keeper)
        with current(victim):
            assert Channel("feed").register() == 0
        sink = net.add_host("sink")
        net.partition(victim, sink)  # dials there hang until connect_timeout
        assert await peer.peer(victim.location) == 0
        conn = connection(peer, victim.location)
        assert victim._peers is not None
        most = 0
        for i in range(1, n + 1):
            fake = fake_task(peer, os.urandom(16), 1, Location(sink.ipv4, 1000 + i))
            target = (ended, running)[i % 2]._task_id
            conn.send_raw([Kind.TASK_MONITOR, i, target, fake])
            conn.send_raw([Kind.CHANNEL_SUBSCRIBE, n + i, "feed", fake, None])
            if i % 100 == 0:
                await trio.testing.wait_all_tasks_blocked()
                most = max(most, len(victim._peers._connecting))
        running.terminate()  # statuses for 1,000 more made-up monitors
        await trio.testing.wait_all_tasks_blocked()
        most = max(most, len(victim._peers._connecting))
        feed = victim._names.by_kind["channel"]["feed"]
        assert isinstance(feed, Channel)
        assert feed.send("fan-out") == 0
        await trio.testing.wait_all_tasks_blocked()
        most = max(most, len(victim._peers._connecting))
        assert most == 4, f"{most} dials at once for one peer"  # max_dials_per_peer
        assert victim._remote.dials.of_peer(peer._node_id) == 4
        assert victim.statistics().dials_refused > n
        await trio.sleep(Limits().connect_timeout + 1)  # the four dials give up
        assert not victim._peers._connecting and victim._remote.dials.active == 0
        assert await victim.spawn(quick).finish() == 1  # still serving
    said = [r.getMessage() for r in caplog.records if "triopycos" in r.name]
    assert len([m for m in said if "no connection to" in m or "dropped" in m]) <= 2 * 20
    assert len([m for m in said if "cannot connect" in m]) <= 20


async def test_on_demand_dials_of_the_nodes_own_code_are_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``Limits.max_dials``: sends to references of nodes the node is not peered
    with start at most that many dials at once (more are refused: -1, counted; a
    send to a node already being dialled joins its queue); a request waits for a
    slot, within its timeout; the queue for one node holds at most
    ``max_outbox_bytes``."""
    limits = Limits(max_dials=2, max_outbox_bytes=64 * 1024)
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=limits) as a,
        net.open_pycos(name="b") as b,
    ):
        sink = net.add_host("sink")
        net.partition(a, sink)
        far = [fake_task(a, os.urandom(16), 1, Location(sink.ipv4, 2000 + i)) for i in range(3)]
        assert [far[0].send("m"), far[1].send("m"), far[2].send("m")] == [0, 0, -1]
        assert far[0].send("joins the queue") == 0
        assert far[0].send(b"x" * 64 * 1024) == -1  # the queue is full
        assert a.statistics().dials_refused == 1
        # A request of the node's own code waits for a slot (here: for ever, as
        # long as its timeout lets it).
        start = trio.current_time()
        assert await far[2].deliver("m", timeout=3) == 0
        assert trio.current_time() - start == 3
        assert a.statistics().dials_refused == 1
        # Once the dials have given up, there is room: a reachable node is reached.
        await trio.sleep(Limits().connect_timeout)
        ref = Task._reference(a, b.spawn(keeper)._triopycos_ref_())
        assert await ref.deliver("m", timeout=5) == 1


# -- helpers ----------------------------------------------------------------------------
