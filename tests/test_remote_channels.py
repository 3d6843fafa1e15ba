"""Channels with subscribers on several nodes (real loopback TCP, bounded)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from conftest import Cluster
from nodes import current

from triopycos import Channel, PeerStatus, Task


async def subscriber(task: Task, count: int) -> list[Any]:
    chan = await Channel.locate("news", timeout=5)
    assert chan is not None
    assert await chan.subscribe(task) == 0
    return [await task.receive(timeout=5) for _ in range(count)]


LIMIT = 10


async def test_fan_out_to_subscribers_on_three_nodes(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b", "c") as (a, b, c):
            with current(a):
                chan = Channel("news")
                assert chan.register() == 0
            subs = [node.spawn(subscriber, 2) for node in (a, b, c)]
            assert await chan.deliver("one", n=3, timeout=5) == 3
            chan.send("two")
            for sub in subs:
                assert await sub.finish() == ["one", "two"]


async def test_deliver_waits_for_late_remote_subscribers(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b", "c") as (a, b, c):
            with current(a):
                chan = Channel("news")
                chan.register()

            async def late(task: Task, delay: float) -> list[Any]:
                await trio.sleep(delay)
                return await subscriber(task, 1)

            subs = [b.spawn(late, 0.2), c.spawn(late, 0.4)]

            async def publisher() -> int:
                rchan = await Channel.locate("news", timeout=5)
                assert rchan is not None
                return await rchan.deliver("for both", n=2, timeout=5)

            assert await b.spawn(publisher).finish() == 2
            for sub in subs:
                assert await sub.finish() == ["for both"]


async def test_subscribers_on_a_crashed_node_are_dropped(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a") as nodes:
            (a,) = nodes
            with current(a):
                chan = Channel("news")
                chan.register()
            local = a.spawn(subscriber, 1)
            offline = trio.Event()

            async def watch(task: Task) -> None:
                task.set_daemon()
                while (await task.receive()).status != PeerStatus.Offline:
                    pass
                offline.set()

            a.peer_status(a.spawn(watch))
            subscribed = trio.Event()

            async def remote_subscriber(task: Task) -> None:
                rchan = await Channel.locate("news", timeout=5)
                assert rchan is not None
                assert await rchan.subscribe(task) == 0
                subscribed.set()
                await task.receive()

            async with nodes.open("b") as b:
                assert await b.peer(a.location) == 0
                b.spawn(remote_subscriber)
                await subscribed.wait()
                assert len(chan._subscribers) == 2
                b.terminate()  # abrupt: no goodbye
            await offline.wait()
            assert len(chan._subscribers) == 1  # only the local one is left
            start = trio.current_time()
            assert await chan.deliver("after the crash", timeout=5) == 1
            assert trio.current_time() - start < 1  # not blocked by the lost node
            assert await local.finish() == ["after the crash"]


async def test_channel_closing_mid_deliver_gives_the_failure_value(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b") as (a, b):
            with current(a):
                chan = Channel("news")
                chan.register()

            async def publisher() -> int:
                rchan = await Channel.locate("news", timeout=5)
                assert rchan is not None
                return await rchan.deliver("never", n=5, timeout=5)

            pub = b.spawn(publisher)
            await trio.testing.wait_all_tasks_blocked()  # the deliver waits on the channel
            chan.close()
            assert await pub.finish() == -1
