"""Supervisors against made-up ends (review findings): a status of a child's end
counts only when it is true.  A peer's status about a task that is not its own is
dropped before any task sees it; a status about a local child that still runs is
not its end; statuses that are no current child's are not kept while a supervisor
waits; a child's end is logged only as type names and escaped excerpts; and the
reaper survives the eviction of the stray it is working on.  Virtual network,
autojump clock."""

from __future__ import annotations

import logging
import math
from types import FrameType

import pytest
import trio
from fault_scenarios import LIMITS
from nodes import connection
from supervision_helpers import Lives, known, make_worker, open_nodes, use
from trio.testing import MockClock

from triopycos import (
    ChildSpec,
    Limits,
    Location,
    MonitorStatus,
    PeerLost,
    Supervisor,
    Task,
    _reaper,
)
from triopycos._supervising import _how, _Run
from triopycos.protocol.codec import Ref
from triopycos.protocol.messages import Kind


async def test_a_peers_made_up_end_of_a_local_child_is_dropped(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_nodes(3) as nodes:
        a = await nodes.open("a", limits=LIMITS)
        b = await nodes.open("b", limits=LIMITS)
        assert await a.peer(b.location) == 0
        lives = Lives()
        with use(b):
            sup = Supervisor([ChildSpec("w", make_worker(lives), ("w",))], max_restarts=3)
        await known(sup, "w")
        child = sup.children()["w"]
        assert child is not None
        conn = connection(a, b)
        with caplog.at_level(logging.WARNING, logger="triopycos.peer"):
            for _ in range(5):  # more than max_restarts: it would give up
                status = MonitorStatus(child, ValueError, "made up")
                assert conn.send_raw([Kind.TASK_SEND, sup.task._task_id, status]) == 0
                await trio.sleep(1)
        assert child.is_alive() and sup.task.is_alive()
        assert lives.running() == {"w": 1} and lives.count("w") == 1
        assert sup.children() == {"w": child}
        said = [r.getMessage() for r in caplog.records if "another node" in r.getMessage()]
        assert len(said) == 1  # once per connection
        sup.terminate()
        await sup.task.finish()
        assert lives.running() == {}


async def test_a_local_tasks_made_up_end_of_a_running_child_is_not_its_end(
    autojump_clock: MockClock,
) -> None:
    async with open_nodes(3) as nodes:
        a = await nodes.open("a", limits=LIMITS)
        lives = Lives()
        with use(a):
            sup = Supervisor([ChildSpec("w", make_worker(lives), ("w",))], max_restarts=3)
        await known(sup, "w")
        child = sup.children()["w"]
        assert child is not None
        for _ in range(5):
            assert sup.task.send(MonitorStatus(child, ValueError, "made up")) == 0
            await trio.sleep(1)
        assert sup.task.is_alive() and lives.count("w") == 1 and child.is_alive()
        child.send("fail")  # a real end is still heard
        await lives.started_times("w", 2)
        sup.terminate()
        await sup.task.finish()


async def slow_to_stop(task: Task) -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(3600)  # a clean-up that takes an hour


async def test_statuses_of_no_current_child_are_not_kept_while_waiting(
    autojump_clock: MockClock,
) -> None:
    limits = Limits(peer_timeout=6.0, reconnect_delay=0.5, connect_timeout=3.0, max_mailbox=100)
    async with open_nodes(3) as nodes:
        a = await nodes.open("a", limits=limits)
        with use(a):
            sup = Supervisor([ChildSpec("slow", slow_to_stop, shutdown=math.inf)])
        await known(sup, "slow")
        sup.terminate()  # it now waits (no limit) for its child to end
        await trio.sleep(1)
        other = a.spawn(slow_to_stop)
        other.set_daemon()
        for _ in range(50):  # bounded: 5,000 statuses in batches under the mailbox bound
            for _ in range(100):
                sup.task.send(MonitorStatus(other, ValueError, "x"))
            await trio.sleep(0.01)
        runs = [
            frame.f_locals["self"]
            for frame in _frames_of(sup.task)
            if isinstance(frame.f_locals.get("self"), _Run)
        ]
        assert runs and len(runs[0].backlog) == 0
        a.terminate()


def _frames_of(task: Task) -> list[FrameType]:
    """The Python frames of a local task's trio task (to read a _Run's state)."""
    frames: list[FrameType] = []
    trio_task = task._trio_task
    assert trio_task is not None
    coro: object = trio_task.coro
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def test_a_childs_end_is_logged_escaped_and_bounded() -> None:
    ref = Ref("task", b"\x01" * 16, 7, "w", Location("127.0.0.1", 9705))
    evil = "x\n2026-01-01 CRITICAL root: FORGED \x1b[31m" + "A" * 100_000
    lost = _how(MonitorStatus(ref, PeerLost, evil))
    assert "\n" not in lost and "\x1b" not in lost and len(lost) < 400
    odd = _how(MonitorStatus(ref, evil, None))  # a type that is not a type
    assert "\n" not in odd and "\x1b" not in odd and len(odd) < 400


async def waits(task: Task) -> None:
    await task.receive()


async def test_the_reaper_survives_the_eviction_of_the_stray_it_is_asking_about(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_reaper, "MAX_STRAYS", 1)
    async with open_nodes(3) as nodes:
        a = await nodes.open("a", limits=LIMITS)
        b = await nodes.open("b", limits=LIMITS)
        nodes.net.set_link(a, b, latency=0.05)
        assert await a.peer(b.location) == 0
        gone = Task._reference(a, Ref("task", b._node_id, 10_000, "gone", b.location))
        live = b.spawn(waits)
        live_ref = Task._reference(a, Ref("task", b._node_id, live._task_id, "w", b.location))
        with caplog.at_level(logging.WARNING):
            _reaper.reap(gone)  # b does not know it: dropped after a round trip
            await trio.sleep(0.06)  # the reaper's request about it is under way
            _reaper.reap(live_ref)  # evicts `gone`
            await trio.sleep(10)
        assert not [r for r in caplog.records if "uncaught" in r.getMessage()]
        assert not live.is_alive()  # the reaper went on and ended it
