"""Regression tests for bugs found by review (each reproduced before its fix)."""

from __future__ import annotations

import gc
from collections.abc import Generator
from typing import Any, cast

import pytest
import trio
import trio.testing
from conftest import Cluster
from nodes import connection

from triopycos import Channel, Limits, Location, MonitorStatus, PeerLost, Task, open_pycos
from triopycos._watches import LOST_KEPT, WatchTable
from triopycos.protocol.messages import Kind, TaskSend
from triopycos.testing import VirtualNetwork


async def test_finish_polling_leaves_no_callbacks_behind(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):

        async def long_running(task: Task) -> None:
            task.register("long")
            await task.receive()

        served = a.spawn(long_running)
        await trio.testing.wait_all_tasks_blocked()

        async def poller() -> None:
            target = await Task.locate("long", timeout=5)
            assert target is not None
            for _ in range(50):
                assert await target.finish(timeout=0) is None

        await b.spawn(poller).finish()
        with trio.fail_after(5):  # every request's own timer has run by then
            while served._end_callbacks:  # noqa: ASYNC110 (internal state, no event)
                await trio.sleep(0.05)
        served.send("stop")


async def test_watches_of_ended_monitors_are_dropped(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):

        async def worker(task: Task) -> None:
            task.register("worker")
            await task.receive()

        w = b.spawn(worker)
        await trio.testing.wait_all_tasks_blocked()

        async def brief_monitor(task: Task) -> None:
            target = await Task.locate("worker", timeout=5)
            assert target is not None
            assert await task.monitor(target) == 0  # then ends without waiting

        for _ in range(20):
            await a.spawn(brief_monitor).finish()
        w.send("end")
        await w.finish()
        with trio.fail_after(5):
            while a._remote._watches.watching(b._node_id):  # noqa: ASYNC110 (as above)
                await trio.sleep(0.05)


async def test_monitoring_again_after_peer_lost_hears_the_real_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="b", peer_timeout=3) as b,
        net.open_pycos(name="a", peer_timeout=3) as a,
    ):

        async def worker(task: Task) -> str:
            task.register("w")
            await task.receive()
            return "done"

        b.spawn(worker)
        assert await a.peer(b.location) == 0

        async def guard(task: Task) -> list[Any]:
            w = await Task.locate("w", timeout=5)
            assert w is not None and await task.monitor(w) == 0
            net.partition(a, [b])
            first = await task.receive(timeout=30)
            net.heal()
            assert await a.locate("b", timeout=30) == b.location  # re-peered
            assert await task.monitor(w) == 0
            w.send("stop")
            return [first, await task.receive(timeout=30)]

        first, second = await a.spawn(guard).finish()
        assert first.type is PeerLost
        assert isinstance(second, MonitorStatus) and second.value == "done"


async def test_each_monitor_hears_once_after_a_partition_whatever_the_number_of_watched_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review finding: the PeerLost marks ("this monitor has been told") were kept
    in one table of 4,096 entries for all nodes; a peer lost with more watched tasks
    than that, and back after the partition healed (the same incarnation), had the
    real statuses of its oldest watched tasks reach their monitors after PeerLost:
    two exit statuses for one task.  The marks now stay on the node's own table
    until the statuses arrive or the node is known gone.  (The server forgets the
    client's monitors when it loses it, so here it pushes the real statuses itself,
    as they arrive when it did not notice the loss.)"""
    count = 4100  # more than the old table held
    limits = Limits(peer_timeout=6.0, reconnect_delay=0.5, connect_timeout=3.0)
    end = trio.Event()

    async def worker() -> str:
        await end.wait()
        return "done"

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="client", limits=limits) as client,
        net.open_pycos(name="server", limits=limits) as server,
    ):
        workers = [server.spawn(worker) for _ in range(count)]
        assert await client.peer(server.location) == 0
        got: list[MonitorStatus] = []
        monitoring, all_lost = trio.Event(), trio.Event()

        async def watcher(task: Task) -> None:
            task.set_daemon()
            for remote in workers:
                ref = Task._reference(client, remote._triopycos_ref_())
                assert await task.monitor(ref) == 0
            monitoring.set()
            while True:
                got.append(await task.receive())
                if len(got) == count:
                    all_lost.set()

        watching = client.spawn(watcher)
        with trio.fail_after(600):
            await monitoring.wait()
        net.partition(client, server)
        with trio.fail_after(60):
            await all_lost.wait()
        assert {s.type for s in got} == {PeerLost}
        net.heal()
        assert await client.locate("server", timeout=60) == server.location  # re-peered
        end.set()  # every worker ends
        await trio.testing.wait_all_tasks_blocked()
        assert server._peers is not None
        conn = server._peers.by_id[client._node_id]
        for remote in workers:
            status = MonitorStatus(remote, StopIteration, "done")
            assert conn.send(TaskSend(watching._task_id, status)) == 0
        await trio.testing.wait_all_tasks_blocked()
        assert len(got) == count, f"{len(got) - count} real statuses after PeerLost"
        assert client._remote._watches.marks(server._node_id) == 0  # all arrived


def test_told_marks_go_when_their_node_is_known_gone() -> None:
    """A lost node's marks (and its being a stale incarnation) stay until a new
    incarnation appears at its location, or until ``LOST_KEPT`` other nodes have
    been lost since (its marks are the first to go then, never another node's)."""
    table = WatchTable()
    monitor = cast(Task, object())
    here, there = Location("10.0.0.1", 9705), Location("10.0.0.2", 9705)
    for node_id, where in ((b"old", here), (b"other", there)):
        assert table.watch(node_id, 1, monitor, "w")
        assert [(1, "w", [monitor])] == table.lost(node_id, where)
    table.online(b"other", (there,))  # back after a partition: its mark stays
    assert table.marks(b"other") == 1 and not table.is_lost(b"other")
    table.online(b"new", (here,))  # a new incarnation where b"old" was
    assert table.marks(b"old") == 0 and not table.is_lost(b"old")
    for i in range(LOST_KEPT):
        table.lost(i.to_bytes(4, "big"), Location("10.0.1.1", 1 + i))
    assert table.is_lost((0).to_bytes(4, "big"))
    table.lost(b"one more", Location("10.0.2.1", 1))
    assert not table.is_lost((0).to_bytes(4, "big"))  # the longest lost is forgotten
    assert table.marks(b"other") == 1  # an online node's mark is never pushed out
    assert table.heard(b"other", 1, monitor) is False  # its real status is dropped
    assert table.marks(b"other") == 0 and table.heard(b"other", 1, monitor) is True


async def test_a_task_failing_while_its_node_cancels_it_does_not_take_the_node_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def body(task: Task) -> None:
        task.set_daemon()

        async def child() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        t = pycos.spawn(body)
        await trio.testing.wait_all_tasks_blocked()
    assert isinstance(await t.finish(), MonitorStatus)  # its failure is its status


async def test_sends_then_a_request_to_an_unpeered_node_keep_their_order(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b", "c", peered=False) as (a, b, c):
        assert await a.peer(b.location) == 0
        assert await c.peer(b.location) == 0

        async def sink(task: Task) -> list[Any]:
            task.register("sink")
            return [await task.receive(timeout=10) for _ in range(2)]

        got = c.spawn(sink)

        async def relay(task: Task) -> None:
            task.register("relay")
            asker = await task.receive()
            asker.send(await Task.locate("sink", c.location, timeout=5))

        b.spawn(relay)

        async def sender(task: Task) -> None:
            r = await Task.locate("relay", b.location, timeout=5)
            assert r is not None
            r.send(task)
            ref = await task.receive(timeout=5)  # a reference to c's task; a has no c
            assert ref.send("m1") == 0
            assert await ref.deliver("m2", timeout=5) == 1

        await a.spawn(sender).finish()
        assert await got.finish() == ["m1", "m2"]


async def test_bad_values_in_a_peer_message_do_not_end_the_session(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b") as (a, b):
        conn = connection(b)
        for bad in (
            [Kind.TASK_FINISH, 900, 1, "x"],
            [Kind.LOCATE, 901, "task", "n", -1],
            [Kind.CHANNEL_DELIVER, 902, "c", "m", None, -1],
            [[1], 903],
        ):
            conn.send_raw(bad)
        assert await b.locate("a", timeout=1) == a.location
        assert a.peers() == [b.location] and not conn.closed


async def test_unencodable_message_to_a_channel_with_remote_subscribers_is_refused_whole(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b") as (a, b):
        chan = Channel("news")  # on b (the innermost node of the cluster)
        assert chan.register() == 0

        async def local(task: Task) -> Any:
            return await task.receive(timeout=1, alarm_value="nothing")

        async def remote(task: Task) -> None:
            rchan = await Channel.locate("news", timeout=5)
            assert rchan is not None and await rchan.subscribe(task) == 0

        await chan.subscribe(local_task := b.spawn(local))
        await a.spawn(remote).finish()
        with pytest.raises(TypeError):
            chan.send(object())
        with pytest.raises(TypeError):
            await chan.deliver(object())
        assert await local_task.finish() == "nothing"  # nobody got half of it


async def test_every_generator_on_the_stack_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []

    def inner(task: Task) -> Generator[Any, Any, None]:
        try:
            yield task.receive()
        finally:
            yield None  # not allowed while closing: reported, and the caller closes

    def outer(task: Task) -> Generator[Any, Any, None]:
        try:
            yield inner(task)
        finally:
            log.append("outer")

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        t = pycos.spawn(outer)
        await trio.testing.wait_all_tasks_blocked()
        t.terminate()
        assert await t.finish() is None
    assert log == ["outer"]


async def test_a_cancelled_handshake_closes_its_socket() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def silent(stream: trio.SocketStream) -> None:
            await trio.sleep_forever()

        nursery.start_soon(trio.serve_listeners, silent, listeners)
        async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
            found = await Task.locate("x", Location("127.0.0.1", port), timeout=0.3)
            assert found is None
            del pycos
        gc.collect()  # an unclosed socket would warn here (warnings are errors)
        nursery.cancel_scope.cancel()
