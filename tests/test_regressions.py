"""Regression tests for bugs found by review (each reproduced before its fix)."""

from __future__ import annotations

import gc
from collections.abc import Generator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import Cluster

from triopycos import Channel, Location, MonitorStatus, PeerLost, Task, open_pycos
from triopycos.protocol.messages import Kind
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
            while a._remote._watches.get(b._node_id):  # noqa: ASYNC110 (as above)
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
        assert b._peers is not None
        (conn,) = b._peers.by_id.values()
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
