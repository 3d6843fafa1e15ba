"""Links between local tasks (``Task.link``/``unlink``/``trap_exits``): every
propagation rule of docs/supervision.md, for ``async def`` and generator tasks, on
one node of the virtual network under the autojump clock."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from triopycos import MonitorStatus, PeerLost, Pycos, Task
from triopycos._links import exit_signal
from triopycos.testing import VirtualNetwork


async def waits(task: Task) -> Any:
    """Runs until terminated, or returns the first message it gets."""
    return await task.receive()


async def fails_after(delay: float) -> None:
    await trio.sleep(delay)
    raise ValueError("boom")


async def returns_after(delay: float) -> str:
    await trio.sleep(delay)
    return "done"


async def watch(task: Task, target: Task) -> MonitorStatus:
    """The status ``target``'s monitors get."""
    assert await task.monitor(target) == 0
    status: MonitorStatus = await task.receive()
    return status


async def kinds(*watchers: Task) -> list[object]:
    return [(await w.finish()).type for w in watchers]


@pytest.fixture
async def node() -> Any:
    """One node; each test takes ``autojump_clock`` itself (pytest-trio picks the
    clock from the test's own parameters)."""
    async with VirtualNetwork(seed=3) as net, net.open_pycos(name="links") as pycos:
        yield pycos


@pytest.mark.parametrize("failing", ["linker", "linked"])
async def test_an_exception_terminates_the_other_task(
    node: Pycos, failing: str, autojump_clock: MockClock
) -> None:
    async def linker(task: Task, other: Task, fail: bool) -> None:
        assert await task.link(other) == 0
        if fail:
            await fails_after(1)
        await task.receive()

    async def linked(task: Task, fail: bool) -> None:
        if fail:
            await fails_after(1)
        await task.receive()

    b = Task(linked, failing == "linked")
    a = Task(linker, b, failing == "linker")
    watchers = Task(watch, a), Task(watch, b)
    failed, other = (a, b) if failing == "linker" else (b, a)
    start = trio.current_time()
    statuses = [await w.finish() for w in watchers]
    by_task = {status.info: status for status in statuses}
    assert by_task[failed].type is ValueError
    # Terminated, as terminate() does: the same status type, at the same instant.
    assert by_task[other].type is GeneratorExit and by_task[other].value is None
    assert trio.current_time() - start == 1
    assert not other.is_alive()


async def test_terminate_propagates_and_return_does_not(
    node: Pycos, autojump_clock: MockClock
) -> None:
    terminated, partner = Task(waits), Task(waits)
    returning, survivor = Task(returns_after, 1), Task(waits)

    async def link_pairs(task: Task) -> None:
        assert await terminated.link(partner) == 0
        assert await returning.link(survivor) == 0

    await Task(link_pairs).finish()
    watchers = [Task(watch, t) for t in (terminated, partner, returning)]
    assert terminated.terminate() == 0
    assert await kinds(*watchers) == [GeneratorExit, GeneratorExit, StopIteration]
    await trio.testing.wait_all_tasks_blocked()
    assert survivor.is_alive()
    # The return ended the link: nothing is left to unlink.
    assert await survivor.unlink(returning) == -1
    assert survivor.send("bye") == 0
    assert await survivor.finish() == "bye"


async def test_a_failure_spreads_along_links_and_stops_at_a_trapping_task(
    node: Pycos, autojump_clock: MockClock
) -> None:
    got: list[MonitorStatus] = []

    async def trapper(task: Task) -> str:
        assert task.trap_exits(True) == 0
        got.append(await task.receive())
        return "still running"

    a, b, c, d = Task(waits), Task(waits), Task(fails_after, 1), Task(trapper)
    e = Task(waits)  # linked to the trapping task only

    async def make_chain(task: Task) -> None:
        # e - d(traps) - a - b - c(fails)
        for x, y in [(a, b), (b, c), (d, a), (d, e)]:
            assert await x.link(y) == 0

    await Task(make_chain).finish()
    watchers = [Task(watch, t) for t in (a, b, c)]
    assert await kinds(*watchers) == [GeneratorExit, GeneratorExit, ValueError]
    assert await d.finish() == "still running"
    # d heard a's end (a was terminated through b), not c's: links are not transitive
    # for the message, only for the failure.
    assert [(s.info, s.type) for s in got] == [(a, GeneratorExit)]
    # d returned normally: e, linked to it, lives on.
    await trio.testing.wait_all_tasks_blocked()
    assert e.is_alive()
    e.terminate()


async def test_a_trapping_task_receives_every_exit_as_a_message(
    node: Pycos, autojump_clock: MockClock
) -> None:
    async def trapper(task: Task) -> list[tuple[object, object, object]]:
        assert task.trap_exits() == 0
        links = [Task(fails_after, 1), Task(returns_after, 2), Task(waits)]
        for other in links:
            assert await task.link(other) == 0
        links[2].terminate()
        statuses = [await task.receive() for _ in links]
        return [(s.info, s.type, s.value) for s in statuses]

    t = Task(trapper)
    got = await t.finish()
    assert [(kind, value if kind is not ValueError else "tb") for _, kind, value in got] == [
        (GeneratorExit, None),
        (ValueError, "tb"),
        (StopIteration, "done"),
    ]
    assert "ValueError: boom" in got[1][2]


async def test_trap_exits_can_be_turned_off(node: Pycos, autojump_clock: MockClock) -> None:
    async def trapper(task: Task, other: Task) -> None:
        assert task.trap_exits(True) == 0
        assert task.trap_exits(False) == 0
        assert await task.link(other) == 0
        await task.receive()

    t = Task(trapper, Task(fails_after, 1))
    assert (await Task(watch, t).finish()).type is GeneratorExit


async def test_unlink_stops_propagation_both_ways(node: Pycos, autojump_clock: MockClock) -> None:
    a, b, c = Task(waits), Task(fails_after, 1), Task(fails_after, 1)

    async def links(task: Task) -> None:
        assert await a.link(b) == 0
        assert await a.link(b) == 0  # linking twice is linking once
        assert await c.link(a) == 0
        assert await b.unlink(a) == 0  # either side may unlink
        assert await a.unlink(b) == -1
        assert await a.unlink(c) == 0
        assert await c.unlink(a) == -1

    await Task(links).finish()
    await Task(watch, b).finish()
    await Task(watch, c).finish()
    await trio.testing.wait_all_tasks_blocked()
    assert a.is_alive()
    a.terminate()


async def test_linking_with_an_ended_task_applies_its_exit_at_once(
    node: Pycos, autojump_clock: MockClock
) -> None:
    failed, returned = Task(fails_after, 0), Task(returns_after, 0)
    await Task(watch, failed).finish()
    await returned.finish()

    async def links_late(task: Task, other: Task, trap: bool) -> Any:
        task.trap_exits(trap)
        assert await task.link(other) == 0
        return await task.receive(timeout=1, alarm_value="nothing")

    # A normal end: nothing happens.
    assert await Task(links_late, returned, False).finish() == "nothing"
    # An abnormal one: terminated at once (it never reaches its receive's timeout).
    late = Task(links_late, failed, False)
    start = trio.current_time()
    assert (await Task(watch, late).finish()).type is GeneratorExit
    assert trio.current_time() == start
    # Trapping: the exit arrives as a message.
    status = await Task(links_late, failed, True).finish()
    assert isinstance(status, MonitorStatus) and status.info == failed
    assert status.type is ValueError


def generator_linker(task: Task, other: Task) -> Generator[Any, Any, None]:
    result = yield task.link(other)
    assert result == 0
    yield task.receive()


def generator_trapper(task: Task, other: Task) -> Generator[Any, Any, Any]:
    task.trap_exits(True)
    result = yield task.link(other)
    assert result == 0
    status = yield task.receive()
    unlinked = yield task.unlink(other)
    return status.type, unlinked


def generator_failing(task: Task) -> Generator[Any, Any, None]:
    yield task.sleep(1)
    raise KeyError("gen")


async def test_generator_tasks_link_and_trap_exits(node: Pycos, autojump_clock: MockClock) -> None:
    failing = Task(generator_failing)
    linker = Task(generator_linker, failing)
    trapper = Task(generator_trapper, failing)
    native = Task(waits)
    gen_partner = Task(generator_linker, native)
    watchers = [Task(watch, t) for t in (failing, linker, gen_partner)]
    await trio.sleep(0.5)
    native.terminate()  # a native task's end reaches a generator task too
    assert await kinds(*watchers) == [KeyError, GeneratorExit, GeneratorExit]
    # The exit dissolved the link: unlinking afterwards finds none.
    assert await trapper.finish() == (KeyError, -1)


async def test_what_cannot_be_linked(
    node: Pycos, caplog: pytest.LogCaptureFixture, autojump_clock: MockClock
) -> None:
    ended = Task(returns_after, 0)
    await ended.finish()

    async def checks(task: Task) -> None:
        assert await task.link(task) == -1
        assert await ended.link(task) == -1  # an ended task links with nothing
        assert ended.trap_exits(True) == -1
        assert await task.unlink(ended) == -1
        with pytest.raises(TypeError, match="needs a Task"):
            await task.link("worker")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="needs a Task"):
            await task.unlink(None)  # type: ignore[arg-type]

    await Task(checks).finish()


async def test_a_task_object_of_another_node_of_the_process_is_not_linked(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two nodes of one process are two nodes, whatever the objects are: only a
    reference (from a message or ``locate``) links across them (see
    test_links_remote.py); and a reference itself links nothing."""
    async with (
        VirtualNetwork(seed=3) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await a.peer(b.location) == 0
        remote = b.spawn(waits)
        remote.register("remote")

        async def tries(task: Task) -> tuple[int, int]:
            ref = await Task.locate("remote", timeout=5)
            assert ref is not None and ref.location == b.location != a.location
            return await ref.link(task), ref.trap_exits(True)

        assert await a.spawn(tries).finish() == (-1, -1)
        with caplog.at_level(logging.WARNING, logger="triopycos.task"):
            assert await remote.link(a.spawn(waits)) == -1
        assert "a task of another node" in caplog.text
        remote.terminate()
        for task in list(a._tasks.values()):
            task.terminate()


async def test_a_lost_node_is_an_abnormal_exit(node: Pycos, autojump_clock: MockClock) -> None:
    """The rule applied to the local partners of a task lost with its node
    (``exit_signal`` with ``PeerLost``): terminated, or told if trapping."""

    async def trapper(task: Task) -> Any:
        task.trap_exits(True)
        return await task.receive()

    plain, trapping = Task(waits), Task(trapper)
    watcher = Task(watch, plain)
    await trio.testing.wait_all_tasks_blocked()
    lost = MonitorStatus(Task(waits), PeerLost, "peer 'x' at 10.0.0.9:9705 was lost")
    exit_signal(plain, lost)
    exit_signal(trapping, lost)
    assert (await watcher.finish()).type is GeneratorExit
    assert await trapping.finish() == lost
    assert isinstance(lost.info, Task)
    lost.info.terminate()
