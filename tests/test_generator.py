"""Generator task bodies (pycos syntax) on the same object model as async tasks."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import trio
from trio.testing import MockClock

from triopycos import MonitorStatus, Task, open_pycos

Gen = Generator[Any, Any, Any]


async def test_generator_task_receives_with_yield(autojump_clock: MockClock) -> None:
    def echo(task: Task) -> Gen:
        msgs: list[Any] = []
        while True:
            msg = yield task.receive()
            if msg is None:
                return msgs
            msgs.append(msg)

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(echo)
        for m in ("a", "b", None):
            t.send(m)
        assert await t.finish() == ["a", "b"]


async def test_plain_values_come_back_and_subgenerators_return(autojump_clock: MockClock) -> None:
    def sub(x: int) -> Gen:
        yield None
        return x * 2

    def failing_sub() -> Gen:
        yield
        raise KeyError("inner")

    def body() -> Gen:
        plain = yield 7
        nothing = yield
        doubled = yield sub(21)
        try:
            yield failing_sub()
        except KeyError as exc:
            caught = exc.args[0]
        slept = yield trio.sleep(1)  # noqa: ASYNC105 (the driver awaits what is yielded)
        return plain, nothing, doubled, caught, slept

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        assert await Task(body).finish() == (7, None, 42, "inner", None)


async def test_exceptions_of_awaitables_are_thrown_in(autojump_clock: MockClock) -> None:
    def body(task: Task) -> Gen:
        try:
            yield task.receive(timeout=-1)
        except ValueError:
            return "caught"
        return "missed"

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        assert await Task(body).finish() == "caught"


async def test_terminate_closes_the_generator_stack_innermost_first(
    autojump_clock: MockClock,
) -> None:
    order: list[str] = []

    def inner(task: Task) -> Gen:
        try:
            yield task.receive()
        finally:
            order.append("inner")

    def outer(task: Task) -> Gen:
        try:
            yield inner(task)
        finally:
            order.append("outer")

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(outer)
        await trio.sleep(1)
        t.terminate()
        assert await t.finish() is None
    assert order == ["inner", "outer"]


async def test_uncaught_generator_exception_reaches_monitors(autojump_clock: MockClock) -> None:
    def bad() -> Gen:
        yield trio.sleep(1)  # noqa: ASYNC105
        raise OSError("disk")

    def watcher(task: Task, target: Task) -> Gen:
        yield task.monitor(target)
        status = yield task.receive()
        return status

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        target = Task(bad)
        status = await Task(watcher, target).finish()
    assert isinstance(status, MonitorStatus)
    assert status.info is target and status.type is OSError
    assert isinstance(status.value, str) and "OSError: disk" in status.value


async def test_generator_and_async_tasks_message_each_other(autojump_clock: MockClock) -> None:
    def gen_ping(task: Task, peer: Task, rounds: int) -> Gen:
        for i in range(rounds):
            peer.send((task, i))
            reply = yield task.receive()
            assert reply == i + 1
        peer.send(None)
        return "pinged"

    async def async_pong(task: Task) -> int:
        count = 0
        while (msg := await task.receive()) is not None:
            sender, i = msg
            sender.send(i + 1)
            count += 1
        return count

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        pong = Task(async_pong)
        ping = Task(gen_ping, pong, 50)
        assert await ping.finish() == "pinged"
        assert await pong.finish() == 50
