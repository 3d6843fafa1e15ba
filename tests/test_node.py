"""The node: open_pycos, which node a call means, shutdown rules, bad arguments."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
import trio
import trio.testing

from triopycos import Location, NodeStatistics, PycosError, Task, open_pycos
from triopycos._context import current_node
from triopycos._node_tasks import LEAVE_GRACE


async def test_open_pycos_yields_a_named_node() -> None:
    async with open_pycos(
        name="alpha", node="127.0.0.1", tcp_port=0, discover_peers=False
    ) as pycos:
        assert pycos.name == "alpha"
        assert isinstance(pycos.location, Location)
        assert current_node() is pycos
        assert pycos.peers() == []
    async with open_pycos(node="127.0.0.2", tcp_port=0, discover_peers=False) as pycos:
        assert pycos.location.addr == "127.0.0.2" and pycos.location.port > 0
        assert pycos.name == str(pycos.location)


async def test_body_exception_comes_out_as_itself() -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
            raise KeyError("boom")


async def test_body_exception_cancels_tasks() -> None:
    seen: list[str] = []

    async def sleeper() -> None:
        try:
            await trio.sleep_forever()
        finally:
            seen.append("cancelled")

    with pytest.raises(RuntimeError):
        async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
            Task(sleeper)
            await trio.testing.wait_all_tasks_blocked()
            raise RuntimeError("x")
    assert seen == ["cancelled"]


async def test_exit_waits_for_non_daemon_tasks(autojump_clock: trio.testing.MockClock) -> None:
    done: list[float] = []

    async def worker() -> None:
        await trio.sleep(10)
        done.append(trio.current_time())

    async def daemon(task: Task) -> None:
        task.set_daemon()
        await trio.sleep_forever()

    start = trio.current_time()
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        Task(worker)
        d = Task(daemon)
    assert done and done[0] - start == pytest.approx(10)
    assert trio.current_time() - start == pytest.approx(10)
    assert not d.is_alive()
    assert pycos.statistics().tasks == 0


async def test_leaving_warns_about_the_tasks_it_waits_for(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """A task that never ends keeps the block open: after the grace period, and
    again at growing intervals, a warning names it and says how to end it."""
    caplog.set_level(logging.WARNING, logger="triopycos")

    async def stuck() -> None:
        await trio.sleep_forever()

    async def quiet(task: Task) -> None:
        task.set_daemon()
        await trio.sleep_forever()

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "waits for" in r.getMessage()]

    async def end_later(tasks: list[Task]) -> None:
        await trio.sleep(LEAVE_GRACE * 10)
        for task in tasks:
            task.terminate()

    start = trio.current_time()
    async with (
        trio.open_nursery() as outside,
        open_pycos(name="n", node="127.0.0.1", tcp_port=0, discover_peers=False),
    ):
        first = Task(stuck)
        second = Task(stuck)
        Task(quiet)
        outside.start_soon(end_later, [first, second])
    assert trio.current_time() - start == pytest.approx(LEAVE_GRACE * 10)
    records = warnings()
    # After the grace period, then after 2x, 4x... as long: at 1, 3 and 7 grace periods.
    assert len(records) == 3
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.name.split(".")[0] == "triopycos"
        text = record.getMessage()
        assert "2 non-daemon task(s)" in text
        assert repr(first) in text and repr(second) in text
        assert "quiet" not in text
        for advice in ("set_daemon()", "terminate()", "return"):
            assert advice in text
    assert "after 10 s" in records[0].getMessage()
    assert "after 30 s" in records[1].getMessage()


async def test_leaving_in_time_says_nothing(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    async def brief() -> None:
        await trio.sleep(LEAVE_GRACE / 2)

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        Task(brief)
    assert not [r for r in caplog.records if "waits for" in r.getMessage()]


async def test_terminate_cancels_everything(autojump_clock: trio.testing.MockClock) -> None:
    async def forever() -> None:
        await trio.sleep_forever()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        target = Task(forever)
        await trio.sleep(1)
        pycos.terminate()
        await trio.sleep_forever()  # cancelled by terminate(); the block ends normally
    assert not target.is_alive()
    with pytest.raises(PycosError, match="not running"):
        pycos.spawn(forever)


async def test_spawn_outside_any_node_is_a_clear_error() -> None:
    async def body() -> None:
        pass

    with pytest.raises(PycosError, match="no current triopycos node"):
        Task(body)


async def test_several_nodes_never_mix() -> None:
    where: dict[str, Any] = {}

    async def child(label: str) -> None:
        where[label] = current_node()

    async def parent(label: str) -> None:
        where[label + "-parent"] = current_node()
        Task(child, label)

    async with open_pycos(name="a", node="127.0.0.1", tcp_port=0, discover_peers=False) as a:
        async with open_pycos(name="b", node="127.0.0.1", tcp_port=0, discover_peers=False) as b:
            Task(parent, "in-b")  # innermost block: b
            a.spawn(parent, "in-a")  # explicitly a; its child follows its parent
        assert current_node() is a
        Task(parent, "outer")
    assert where["in-b-parent"] is b and where["in-b"] is b
    assert where["in-a-parent"] is a and where["in-a"] is a
    assert where["outer"] is a


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"udp_port": "9705"}, ValueError),
        ({"udp_port": 70000}, ValueError),
        ({"tcp_port": -1}, ValueError),
        ({"name": 5}, TypeError),
        ({"name": ""}, TypeError),
        ({"secret": b"bytes"}, TypeError),
        ({"max_file_size": -1}, ValueError),
        ({"dest_path": "/a", "dest_path_prefix": "/b"}, TypeError),
        ({"node": []}, TypeError),
        ({"node": ["127.0.0.1", 5]}, TypeError),
    ],
)
async def test_bad_constructor_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"node": "127.0.0.1", "tcp_port": 0, "discover_peers": False}
    with pytest.raises(error):
        async with open_pycos(**(args | kwargs)):
            pass


async def test_dest_path_defaults_and_alias(tmp_path: Any) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        # The default is the user's own folder (tests/test_dest_path.py); the suite
        # keeps it under its own XDG_DATA_HOME (tests/conftest.py).
        assert pycos.dest_path == os.path.join(os.environ["XDG_DATA_HOME"], "triopycos", "files")
    async with open_pycos(
        node="127.0.0.1", tcp_port=0, discover_peers=False, dest_path_prefix=tmp_path
    ) as pycos:
        assert pycos.dest_path == str(tmp_path)


async def test_locate_node_by_name(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pycos(name="me", node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        assert await pycos.locate("me") == pycos.location
        start = trio.current_time()
        assert await pycos.locate("nobody", timeout=3) is None
        assert trio.current_time() - start == pytest.approx(3)
        with pytest.raises(TypeError):
            await pycos.locate(5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await pycos.locate("me", timeout=-1)


async def test_statistics_snapshot() -> None:
    async def idle(task: Task) -> None:
        task.register("idle")
        task.set_daemon()
        await trio.sleep_forever()

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
        Task(idle)
        await trio.testing.wait_all_tasks_blocked()
        stats = pycos.statistics()
        assert isinstance(stats, NodeStatistics)
        assert (stats.tasks, stats.daemon_tasks, stats.registered_tasks) == (1, 1, 1)
        assert stats.tasks_started == 1
