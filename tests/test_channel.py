"""Local channels: fan-out, deliver with n, transform, hierarchy, names, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from triopycos import Channel, Task, open_pycos


async def collector(task: Task, count: int) -> list[Any]:
    return [await task.receive() for _ in range(count)]


async def test_send_fans_out_to_every_subscriber(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("news")
        subs = [Task(collector, 2) for _ in range(3)]
        for s in subs:
            assert await chan.subscribe(s) == 0
        assert await chan.subscribe(subs[0]) == 0  # twice: still one subscription
        assert chan.send("a") == 0
        assert await chan.deliver("b") == 3
        for s in subs:
            assert await s.finish() == ["a", "b"]


async def test_deliver_waits_for_n_subscribers(autojump_clock: MockClock) -> None:
    async def late_subscriber(task: Task, chan: Channel, delay: float) -> Any:
        await trio.sleep(delay)
        await chan.subscribe(task)
        return await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("c")
        a = Task(late_subscriber, chan, 1)
        b = Task(late_subscriber, chan, 2)
        start = trio.current_time()
        assert await chan.deliver("hi", n=2, timeout=5) == 2
        assert trio.current_time() - start == pytest.approx(2)
        assert await a.finish() == "hi" and await b.finish() == "hi"
        # Too few subscribers in time: nothing delivered.
        assert await chan.deliver("nobody", n=1, timeout=1) == 0


async def test_unsubscribe_and_dead_subscribers(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("c")
        keeper = Task(collector, 1)
        quitter = Task(collector, 0)
        await chan.subscribe(keeper)
        await chan.subscribe(quitter)
        await quitter.finish()
        assert await chan.deliver("x") == 1  # the ended task is dropped
        assert await chan.unsubscribe(quitter) == -1
        assert await chan.unsubscribe(keeper) == 0
        assert await chan.deliver("y") == 0
        assert await keeper.finish() == ["x"]


async def test_transform_changes_or_drops_messages(autojump_clock: MockClock) -> None:
    def only_ints(name: str, msg: Any) -> Any:
        assert name == "t"
        if msg == "crash":
            raise RuntimeError("bad transform")
        return msg * 10 if isinstance(msg, int) else None

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("t", transform=only_ints)
        sub = Task(collector, 2)
        await chan.subscribe(sub)
        chan.send("dropped")
        chan.send("crash")
        assert await chan.deliver("also dropped") == 0
        chan.send(1)
        assert await chan.deliver(2) == 1
        assert await sub.finish() == [10, 20]


async def test_channels_subscribe_to_channels(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        top, mid = Channel("top"), Channel("mid")
        direct, nested = Task(collector, 1), Task(collector, 1)
        await top.subscribe(direct)
        await top.subscribe(mid)
        await mid.subscribe(nested)
        assert await top.deliver("m") == 2
        assert await direct.finish() == ["m"] and await nested.finish() == ["m"]
        assert await top.subscribe(top) == -1  # refused, as a remote one is


async def test_closed_channel_refuses(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("c")
        assert chan.register() == 0
        assert await Channel.locate("c") is chan
        chan.close()
        assert await Channel.locate("c", timeout=0) is None  # 0: ask once
        assert chan.send(1) == -1
        assert await chan.deliver(1) == -1
        t = Task(collector, 0)
        assert await chan.subscribe(t) == -1
        assert chan.register() == -1


async def test_register_and_locate_channels(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        a, b = Channel("same"), Channel("same")
        assert a.register() == 0
        assert b.register() == -1
        assert b.register("other") == 0
        assert await Channel.locate("other") is b
        assert a.unregister() == 0 and a.unregister() == -1
        assert await Channel.locate("same", timeout=1) is None


async def test_bad_channel_input(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        with pytest.raises(TypeError):
            Channel(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Channel("c", transform="nope")  # type: ignore[arg-type]
        chan = Channel("c")
        with pytest.raises(TypeError):
            await chan.subscribe("task")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await chan.deliver("m", n=-1)
        with pytest.raises(ValueError):
            await chan.deliver("m", timeout=-2)


async def test_close_ends_a_waiting_deliver_at_once(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        chan = Channel("c")

        async def closer() -> None:
            await trio.sleep(1)
            chan.close()

        Task(closer)
        start = trio.current_time()
        assert await chan.deliver("m", n=3, timeout=60) == -1
        assert trio.current_time() - start == pytest.approx(1)
