"""Supervisors with children on their own node: every strategy and restart kind,
restart intensity, nesting and escalation, names, generator children, shutdown, bad
specs; on the virtual network under the autojump clock.  Remote children and faults
are in test_supervisor_remote.py and test_supervisor_faults.py."""

from __future__ import annotations

import logging
import math
from collections.abc import Generator
from typing import Any

import pytest
import trio
import trio.testing
from supervision_helpers import Lives, Statuses, make_worker, use
from trio.testing import MockClock

from triopycos import (
    RPS,
    ChildSpec,
    MonitorStatus,
    PycosError,
    Supervisor,
    SupervisorGaveUp,
    Task,
)
from triopycos.testing import VirtualNetwork


def specs(worker: Any, *names: str, restart: str = "permanent") -> list[ChildSpec]:
    return [ChildSpec(name, worker, args=(name,), restart=restart) for name in names]  # type: ignore[arg-type]


def in_order(children: dict[Any, Task | None], names: str) -> bool:
    """Whether the children named were started in that order (task ids count up;
    the order in which trio first runs them is its own)."""
    ids = []
    for name in names:
        task = children[name]
        assert task is not None
        ids.append(task._task_id)
    return ids == sorted(ids)


async def test_one_for_one_restarts_only_the_child_that_ended(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "x", "y", "z"))
        await lives.until(lambda: lives.running() == {"x": 1, "y": 1, "z": 1})
        first = sup.children()
        assert in_order(first, "xyz")
        assert list(first) == ["x", "y", "z"] and first["y"] == lives.current("y")
        lives.current("y").send("fail")
        await lives.started_times("y", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert [lives.count(n) for n in "xyz"] == [1, 2, 1]
        now = sup.children()
        assert now["x"] == first["x"] and now["z"] == first["z"]
        assert now["y"] == lives.current("y") != first["y"]
        assert sup.terminate() == 0
        await sup.task.finish()
        assert lives.running() == {}


async def test_one_for_all_stops_the_others_in_reverse_and_starts_all_in_order(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "x", "y", "z"), strategy="one_for_all")
        await lives.until(lambda: len(lives.running()) == 3)
        lives.current("y").send("fail")
        await lives.until(lambda: len(lives.starts) == 6)
        assert [name for _, name, _ in lives.ends] == ["y", "z", "x"]
        assert in_order(sup.children(), "xyz")
        # Each new one started after every old one had ended.
        assert min(t for t, _, _ in lives.starts[3:]) >= max(t for t, _, _ in lives.ends)
        assert lives.running() == {"x": 1, "y": 1, "z": 1}
        sup.terminate()


async def test_rest_for_one_restarts_the_child_and_those_after_it(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "w", "x", "y", "z"), strategy="rest_for_one")
        await lives.until(lambda: len(lives.running()) == 4)
        lives.current("x").send("fail")
        await lives.until(lambda: len(lives.starts) == 7)
        assert [name for _, name, _ in lives.ends] == ["x", "z", "y"]
        assert in_order(sup.children(), "wxyz")
        assert lives.count("w") == 1
        # The last child: only itself.
        lives.current("z").send("fail")
        await lives.started_times("z", 3)
        await trio.testing.wait_all_tasks_blocked()
        assert [lives.count(n) for n in "wxyz"] == [1, 2, 2, 3]
        sup.terminate()


@pytest.mark.parametrize(
    ("restart", "end", "restarted"),
    [
        ("permanent", "return", True),
        ("permanent", "fail", True),
        ("permanent", "terminate", True),
        ("transient", "return", False),
        ("transient", "fail", True),
        ("transient", "terminate", True),
        ("temporary", "return", False),
        ("temporary", "fail", False),
        ("temporary", "terminate", False),
    ],
)
async def test_restart_kinds(
    restart: str, end: str, restarted: bool, autojump_clock: MockClock
) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "c", restart=restart))
        await lives.started_times("c", 1)
        child = lives.current("c")
        if end == "terminate":
            child.terminate()
        else:
            child.send(end)
        await lives.until(lambda: len(lives.ends) == 1)
        await trio.testing.wait_all_tasks_blocked()
        assert lives.count("c") == (2 if restarted else 1)
        if restarted:
            assert sup.children() == {"c": lives.current("c")}
        elif restart == "temporary":
            assert sup.children() == {}  # a temporary child is gone for good
        else:
            assert sup.children() == {"c": None}
        assert sup.task.is_alive()
        sup.terminate()


async def test_one_for_all_does_not_restart_ended_children_that_stay_ended(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    worker = make_worker(lives)
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(
            [
                ChildSpec("t", worker, args=("t",), restart="transient"),
                ChildSpec("p", worker, args=("p",)),
                ChildSpec("tmp", worker, args=("tmp",), restart="temporary"),
            ],
            strategy="one_for_all",
        )
        await lives.until(lambda: len(lives.running()) == 3)
        lives.current("t").send("return")  # transient, normal: stays ended
        await lives.until(lambda: len(lives.ends) == 1)
        lives.current("p").send("fail")
        await lives.until(lambda: lives.running() == {"p": 1})
        await trio.testing.wait_all_tasks_blocked()
        # The temporary child was stopped with the others and is not restarted.
        assert [lives.count(n) for n in ("t", "p", "tmp")] == [1, 2, 1]
        assert sup.children() == {"t": None, "p": lives.current("p")}
        sup.terminate()


async def test_restart_intensity(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        sup = Supervisor(specs(make_worker(lives), "x", "y"), max_restarts=2, max_seconds=10)
        watcher = Statuses(a, sup.task)
        await lives.until(lambda: len(lives.running()) == 2)
        # Two restarts in any 10 s are allowed, however many happen in all.
        for n in range(2, 6):
            lives.current("x").send("fail")
            await lives.started_times("x", n)
            await trio.sleep(5.5)
        assert sup.task.is_alive()
        # A third within 10 s: the supervisor ends every child, then itself.
        lives.current("y").send("fail")
        await trio.sleep(1)
        lives.current("x").send("fail")
        status = await watcher.first()
        assert lives.running() == {}
        assert status.type is SupervisorGaveUp
        assert "3 restarts within 10 s" in str(status.value)
        assert sup.children() == {}
        assert sup.terminate() == -1
        gave_up = await sup.task.finish()
        assert isinstance(gave_up, MonitorStatus) and gave_up.type is SupervisorGaveUp


async def test_max_restarts_zero_gives_up_at_the_first_end(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        sup = Supervisor(specs(make_worker(lives), "x", "y"), max_restarts=0)
        watcher = Statuses(a, sup.task)
        await lives.until(lambda: len(lives.running()) == 2)
        lives.current("y").send("return")  # a permanent child's return is restarted too
        assert (await watcher.first()).type is SupervisorGaveUp
        assert lives.running() == {} and lives.count("y") == 1


async def test_nested_supervisors_escalate(autojump_clock: MockClock) -> None:
    """inner gives up -> outer restarts it (with new children) -> the next time
    outer's own intensity is exceeded, and it gives up: nothing is left running."""
    lives = Lives()
    worker = make_worker(lives)
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        inner_specs = specs(worker, "i1", "i2")
        outer = Supervisor(
            [
                ChildSpec("o1", worker, args=("o1",)),
                ChildSpec("inner", Supervisor, args=(inner_specs,), kwargs={"max_restarts": 0}),
            ],
            max_restarts=1,
            max_seconds=60,
        )
        watcher = Statuses(a, outer.task)
        await lives.until(lambda: len(lives.running()) == 3)
        inner_task = outer.children()["inner"]
        assert inner_task is not None and inner_task.name == "supervisor"
        lives.current("i2").send("fail")  # inner gives up; outer restarts it
        await lives.until(lambda: lives.count("i1") == 2 and len(lives.running()) == 3)
        new_inner = outer.children()["inner"]
        assert new_inner is not None and new_inner != inner_task
        assert lives.count("o1") == 1  # one_for_one: the sibling stayed
        lives.current("i1").send("fail")  # inner gives up again: outer gives up
        status = await watcher.first()
        assert status.type is SupervisorGaveUp
        assert "child 'inner' raised SupervisorGaveUp" in str(status.value)
        assert lives.running() == {}


async def test_terminating_a_supervisor_ends_its_children_first(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    running_at_end: list[dict[Any, int]] = []
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        outer = Supervisor(
            [ChildSpec("inner", Supervisor, args=(specs(make_worker(lives), "x", "y"),))]
        )

        async def watch(task: Task) -> object:
            assert await task.monitor(outer.task) == 0
            status = await task.receive()
            running_at_end.append(lives.running())
            return status.type

        watching = a.spawn(watch)
        await lives.until(lambda: len(lives.running()) == 2)
        assert outer.terminate() == 0
        assert await watching.finish() is GeneratorExit
        assert running_at_end == [{}]
        assert [name for _, name, _ in lives.ends] == ["y", "x"]


async def test_a_restarted_child_registers_its_name_again(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await b.peer(a.location) == 0
        with use(a):
            sup = Supervisor([ChildSpec("svc", make_worker(lives), args=("svc", True))])
        await lives.started_times("svc", 1)

        async def find(task: Task) -> Task | None:
            return await Task.locate("svc", timeout=5)

        first = await b.spawn(find).finish()
        assert first == lives.current("svc")
        assert first is not None and first.send("fail") == 0  # from the other node
        await lives.started_times("svc", 2)
        found = await b.spawn(find).finish()
        assert found == lives.current("svc") != first
        sup.terminate()


def generator_child(task: Task, lives: Lives, name: str) -> Generator[Any, Any, None]:
    lives.started(name, task)
    try:
        message = yield task.receive()
        if message == "fail":
            raise RuntimeError("generator child failed")
    finally:
        lives.ended(name, task)


async def test_generator_children(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor([ChildSpec("g", generator_child, args=(lives, "g"), restart="transient")])
        await lives.started_times("g", 1)
        lives.current("g").send("fail")
        await lives.started_times("g", 2)
        lives.current("g").send("normal end")
        await lives.until(lambda: len(lives.ends) == 2)
        await trio.testing.wait_all_tasks_blocked()
        assert lives.count("g") == 2 and sup.children() == {"g": None}
        sup.terminate()


async def test_a_child_that_cannot_start_is_a_failed_restart(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        sup = Supervisor(
            [ChildSpec("ghost", "no-such-rps", locate_timeout=1)], max_restarts=3, max_seconds=10
        )
        watcher = Statuses(a, sup.task)
        # While it looks for the RPS, the child is None.
        await trio.sleep(0.5)
        assert sup.children() == {"ghost": None}
        status = await watcher.first()
        assert status.type is SupervisorGaveUp
        # Four attempts of 1 s each: the fourth failure is the fourth restart.
        assert watcher.got[0][0] == pytest.approx(4, abs=0.1)
        assert caplog.text.count("no RPS 'no-such-rps' found") == 4


async def test_a_local_rps_as_a_child(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        rps = RPS(make_worker(lives), name="worker")
        assert rps.register() == 0
        sup = Supervisor(
            [
                ChildSpec("by-ref", rps, args=("by-ref",)),
                ChildSpec("by-name", "worker", ("by-name",)),
            ]
        )
        await lives.until(lambda: len(lives.running()) == 2)
        lives.current("by-name").send("fail")
        lives.current("by-ref").send("fail")
        await lives.until(lambda: len(lives.starts) == 4 and len(lives.running()) == 2)
        assert sup.children() == {n: lives.current(n) for n in ("by-ref", "by-name")}
        sup.terminate()
        await sup.task.finish()
        assert lives.running() == {}


async def test_a_daemon_supervisor_does_not_keep_its_node_open(
    autojump_clock: MockClock,
) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "x"))
        sup.task.set_daemon()
        await lives.started_times("x", 1)
        lives.current("x").send("fail")  # a child started while it is a daemon is one
        await lives.started_times("x", 2)
        start = trio.current_time()
    assert trio.current_time() - start < 1  # leaving did not wait for anyone
    assert lives.running() == {}


async def test_a_stubborn_child_is_waited_for_its_shutdown_seconds(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    ended_at: list[float] = []

    async def stubborn(task: Task) -> None:
        try:
            await task.receive()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(100)
            ended_at.append(trio.current_time())

    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a") as a:
        sup = Supervisor([ChildSpec("s", stubborn, shutdown=2), ChildSpec("t", stubborn)])
        watcher = Statuses(a, sup.task)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        sup.terminate()
        await watcher.first()
        # t (default: 5 s), then s (2 s): the supervisor went on without them.
        assert trio.current_time() - start == pytest.approx(7)
        assert ended_at == []
        assert "did not end within 5 s" in caplog.text
        assert "did not end within 2 s" in caplog.text
        await trio.sleep(100)
        assert len(ended_at) == 2


async def test_other_messages_to_a_supervisor_are_ignored(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "x"))
        await lives.started_times("x", 1)
        stranger = Task(make_worker(lives), "stranger")
        await trio.testing.wait_all_tasks_blocked()
        for message in ["hello", MonitorStatus(stranger, ValueError, "not a child"), [1, 2]]:
            assert sup.task.send(message) == 0
        sup.task.send(MonitorStatus({"unhashable": 1}, ValueError, "odd"))
        await trio.testing.wait_all_tasks_blocked()
        assert lives.count("x") == 1 and sup.task.is_alive()
        assert caplog.text.count("ignores messages") == 1
        stranger.terminate()
        sup.terminate()


async def test_bad_specs_and_arguments(autojump_clock: MockClock) -> None:
    async def body(task: Task) -> None:
        await task.receive()

    def plain() -> None: ...

    with pytest.raises(TypeError, match="task function"):
        ChildSpec("x", plain)
    with pytest.raises(TypeError, match="task function"):
        ChildSpec("x", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="restart must be"):
        ChildSpec("x", body, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        ChildSpec("x", "")
    with pytest.raises(TypeError, match="args must be a tuple"):
        ChildSpec("x", body, args=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ChildSpec(["unhashable"], body)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ChildSpec("x", body, shutdown=-1)
    with pytest.raises(TypeError):
        ChildSpec("x", "rps", locate_timeout="1")  # type: ignore[arg-type]
    assert ChildSpec("x", Supervisor)._shutdown() == math.inf
    assert ChildSpec("x", body)._shutdown() == 5.0
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        spec = ChildSpec("x", body)
        cases: list[tuple[dict[str, Any], type[Exception]]] = [
            ({"specs": [spec, spec]}, ValueError),
            ({"specs": ["x"]}, TypeError),
            ({"specs": [spec], "strategy": "one_for_some"}, ValueError),
            ({"specs": [spec], "max_restarts": -1}, ValueError),
            ({"specs": [spec], "max_restarts": True}, ValueError),
            ({"specs": [spec], "max_seconds": 0}, ValueError),
        ]
        for kwargs, error in cases:
            with pytest.raises(error):
                Supervisor(**kwargs)
    with pytest.raises(PycosError, match="no current triopycos node"):
        Supervisor([spec])


async def test_children_from_a_plain_thread(autojump_clock: MockClock) -> None:
    lives = Lives()
    async with VirtualNetwork(seed=1) as net, net.open_pycos(name="a"):
        sup = Supervisor(specs(make_worker(lives), "x"))
        await lives.started_times("x", 1)
        children = await trio.to_thread.run_sync(sup.children)
        assert children == {"x": lives.current("x")}
        assert await trio.to_thread.run_sync(sup.terminate) == 0
        await sup.task.finish()
    assert logging.getLogger("triopycos.supervisor").level in (logging.NOTSET, logging.INFO)
