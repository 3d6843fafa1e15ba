"""Local tasks: mailbox, names, monitors, lifetime, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from triopycos import MonitorStatus, PycosError, Task, open_pycos


async def test_send_receive_fifo(autojump_clock: MockClock) -> None:
    got: list[int] = []

    async def receiver(task: Task) -> None:
        for _ in range(100):
            got.append(await task.receive())

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(receiver)
        assert all(t.send(i) == 0 for i in range(50))
        await trio.sleep(1)
        assert all(t.send(i) == 0 for i in range(50, 100))
    assert got == list(range(100))
    assert t.send("late") == -1


async def test_deliver_says_whether_message_is_in_the_mailbox(autojump_clock: MockClock) -> None:
    async def quick(task: Task) -> Any:
        return await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(quick)
        assert await t.deliver("hello") == 1
        assert await t.finish() == "hello"
        assert await t.deliver("again", timeout=1) == 0


async def test_receive_timeout_gives_alarm_value(autojump_clock: MockClock) -> None:
    results: list[Any] = []

    async def body(task: Task) -> None:
        start = trio.current_time()
        results.append(await task.receive(timeout=2.5, alarm_value="alarm"))
        results.append(trio.current_time() - start)
        results.append(await task.receive(timeout=0))
        task.send("queued")
        results.append(await task.receive(timeout=0))

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        Task(body)
    assert results == ["alarm", pytest.approx(2.5), None, "queued"]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(-1, ValueError), (math.nan, ValueError), ("1", TypeError), (True, TypeError)],
)
async def test_bad_timeouts_are_refused(
    autojump_clock: MockClock, timeout: Any, error: type[Exception]
) -> None:
    caught: list[BaseException] = []

    async def body(task: Task) -> None:
        for call in (task.receive, task.sleep, task.finish):
            try:
                await call(timeout=timeout)
            except Exception as exc:
                caught.append(exc)

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        Task(body)
    assert len(caught) == 3
    assert all(isinstance(exc, error) for exc in caught)


async def test_only_the_task_itself_receives(autojump_clock: MockClock) -> None:
    async def idle(task: Task) -> None:
        await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(idle)
        with pytest.raises(RuntimeError, match="itself"):
            await t.receive()
        t.send("stop")


async def test_terminate_during_receive_reports_generator_exit(autojump_clock: MockClock) -> None:
    async def waiter(task: Task) -> None:
        await task.receive()

    async def watcher(task: Task, target: Task) -> Any:
        assert await task.monitor(target) == 0
        return await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        target = Task(waiter)
        watch = Task(watcher, target)
        await trio.sleep(1)
        assert target.terminate() == 0
        status = await watch.finish()
        assert status == MonitorStatus(target, GeneratorExit, None)
        assert await target.finish() is None
        assert target.terminate() == -1
        assert not target.is_alive()


async def test_terminate_before_start_runs_nothing(autojump_clock: MockClock) -> None:
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(body)
        t.terminate()
    assert ran == []
    assert not t.is_alive()


async def test_monitor_sees_return_value_and_exceptions(autojump_clock: MockClock) -> None:
    async def returns() -> str:
        await trio.sleep(1)
        return "result"

    async def fails() -> None:
        await trio.sleep(1)
        raise ZeroDivisionError("oops")

    async def watcher(task: Task, targets: list[Task]) -> list[Any]:
        for target in targets:
            assert await task.monitor(target) == 0
        return [await task.receive() for _ in targets]

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        good, bad = Task(returns), Task(fails)
        watch = Task(watcher, [good, bad])
        statuses = await watch.finish()
        survivor = Task(returns)  # the failure did not tear the node down
        assert await survivor.finish() == "result"
    by_task = {s.info: s for s in statuses}
    assert by_task[good].type is StopIteration and by_task[good].value == "result"
    assert by_task[bad].type is ZeroDivisionError
    assert "ZeroDivisionError: oops" in by_task[bad].value
    failed = await bad.finish()
    assert isinstance(failed, MonitorStatus) and failed.type is ZeroDivisionError


async def test_monitoring_an_ended_task_still_reports_its_exit(autojump_clock: MockClock) -> None:
    async def instant() -> int:
        return 42

    async def watcher(task: Task, target: Task) -> Any:
        await target.finish()
        assert await task.monitor(target) == 0
        return await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        target = Task(instant)
        status = await Task(watcher, target).finish()
    assert status == MonitorStatus(target, StopIteration, 42)


async def test_notify_adds_a_monitor(autojump_clock: MockClock) -> None:
    async def worker(task: Task) -> str:
        await task.receive()
        return "done"

    async def boss(task: Task) -> Any:
        return await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        w, b = Task(worker), Task(boss)
        assert w.notify(b) == 0
        w.send("go")
        assert await b.finish() == MonitorStatus(w, StopIteration, "done")
        with pytest.raises(TypeError):
            w.notify("not a task")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await b.monitor(None)  # type: ignore[arg-type]


async def test_register_unregister_locate(autojump_clock: MockClock) -> None:
    async def server(task: Task) -> None:
        assert task.register() == 0  # its function's name
        assert task.register("srv") == 0
        assert task.register("srv") == 0  # same task again: fine
        await task.receive()

    async def other(task: Task) -> int:
        return task.register("srv")

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        s = Task(server)
        await trio.testing.wait_all_tasks_blocked()
        assert await Task.locate("srv") is s
        assert await Task.locate("server") is s
        assert await Task(other).finish() == -1  # names are unique per node
        assert s.unregister("srv") == 0
        assert s.unregister("srv") == -1
        assert await Task.locate("srv", timeout=0) is None
        s.send("quit")
        await s.finish()
        assert await Task.locate("server", timeout=0) is None  # names go with the task
        with pytest.raises(TypeError):
            await Task.locate(3)  # type: ignore[arg-type]


async def test_locate_waits_for_a_late_registration(autojump_clock: MockClock) -> None:
    async def late(task: Task) -> None:
        await trio.sleep(2)
        task.register("late")
        await task.receive()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(late)
        start = trio.current_time()
        assert await Task.locate("late", timeout=5) is t
        assert trio.current_time() - start == pytest.approx(2)
        assert await Task.locate("never", timeout=1) is None
        t.send("quit")


async def test_bad_task_bodies_are_refused(autojump_clock: MockClock) -> None:
    def plain() -> None:
        pass

    async def needs_arg(x: int) -> None:
        pass

    async def agen() -> Any:
        yield 1

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        for body in (plain, agen, "name", None, 42):
            with pytest.raises(TypeError, match="generator function or an async function"):
                Task(body)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pycos.spawn(needs_arg)
        assert pycos.statistics().tasks == 0


async def test_task_parameter_and_arguments(autojump_clock: MockClock) -> None:
    async def body(a: int, b: int = 0, *, task: Task) -> tuple[int, int, str]:
        return a, b, task.name

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        t = pycos.spawn(body, 1, b=2)
        assert await t.finish() == (1, 2, "body")
        assert repr(t).startswith("body/")


async def test_finish_with_timeout_and_on_itself(autojump_clock: MockClock) -> None:
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    async def selfish(task: Task) -> None:
        await task.finish()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(slow)
        assert await t.finish(timeout=1) is None
        assert await t.finish() == 1
        s = Task(selfish)
        failed = await s.finish()
        assert isinstance(failed, MonitorStatus) and failed.type is RuntimeError


async def test_sleep_and_daemon(autojump_clock: MockClock) -> None:
    async def body(task: Task) -> float:
        start = trio.current_time()
        assert await task.sleep(3) == 0
        return trio.current_time() - start

    async def daemon(task: Task) -> None:
        assert task.set_daemon() == 0
        assert task.set_daemon(False) == 0
        assert task.set_daemon(True) == 0
        await trio.sleep_forever()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        assert await Task(body).finish() == pytest.approx(3)
        Task(daemon)
        await trio.testing.wait_all_tasks_blocked()
        assert pycos.statistics().daemon_tasks == 1


async def test_failing_task_is_logged_and_node_keeps_serving(
    autojump_clock: MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def bad() -> None:
        raise ValueError("broken")

    async def good() -> str:
        return "fine"

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        await Task(bad).finish()
        assert await Task(good).finish() == "fine"
    assert any("ValueError: broken" in r.getMessage() for r in caplog.records)


async def test_spawning_on_a_closed_node_fails(autojump_clock: MockClock) -> None:
    async def body() -> None:
        pass

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        pass
    with pytest.raises(PycosError):
        pycos.spawn(body)


async def test_locate_without_timeout_waits_until_the_name_appears(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # pycos's semantics: no location and no timeout wait for the name.
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        found: list[Task | None] = []

        async def looker() -> None:
            found.append(await Task.locate("late"))

        async def late(task: Task) -> None:
            task.register("late")
            await task.receive()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(looker)
            await trio.sleep(100)
            assert found == []  # still waiting
            t = Task(late)
        assert found == [t]
        t.send(None)
