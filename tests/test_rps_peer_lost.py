"""``rps.monitor()`` watchers when the serving node is lost (issue 17, item 1), on the
virtual network under the autojump clock: a crash (a reset reaches the client at
once), a silent crash, a partition and a freeze (noticed by heartbeats after
``peer_timeout``), and a node lost while the call's reply is still on its way to
the caller.  In every case the watcher gets ``MonitorStatus(task, PeerLost, reason)``
exactly once, as ``Task.monitor`` watchers do, and ``finish()`` of the task returns
None at once.  The same over real processes (kill -9, SIGSTOP) is in
``test_processes_rps.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from fault_scenarios import DETECTION, LIMITS

from triopycos import RPS, Location, MonitorStatus, PeerLost, PeerStatus, Pycos, Task
from triopycos.testing import VirtualNetwork

#: Longest wait for anything (virtual seconds): far more than any detection takes.
WAIT = 60


async def waits(task: Task) -> Any:
    return await task.receive()


async def instant(x: int) -> int:
    return x


class Statuses:
    """A daemon task on ``node`` that records every message it gets (with the trio
    time) and lets the test wait for the ``count``-th.  With ``observe``, it first
    monitors that task itself (``monitoring`` is set once it does)."""

    def __init__(self, node: Pycos, observe: Task | None = None) -> None:
        self.got: list[tuple[float, Any]] = []
        self.monitoring = trio.Event()
        self._observe = observe
        self._changed = trio.Event()
        self.task = node.spawn(self._run)

    async def _run(self, task: Task) -> None:
        task.set_daemon()
        if self._observe is not None:
            assert await task.monitor(self._observe) == 0
        self.monitoring.set()
        while True:
            message = await task.receive()
            self.got.append((trio.current_time(), message))
            self._changed.set()
            self._changed = trio.Event()

    def kinds(self) -> list[Any]:
        return [status.type for _, status in self.got]

    async def wait_for(self, count: int) -> float:
        with trio.fail_after(WAIT):
            while len(self.got) < count:
                await self._changed.wait()
        return self.got[count - 1][0]


async def peer_online(node: Pycos, count: int) -> None:
    """Wait until ``node`` has reported ``count`` peers Online (since this call)."""
    seen = trio.Event()
    online = 0

    async def watch(task: Task) -> None:
        nonlocal online
        task.set_daemon()
        while True:
            status = await task.receive()
            if status.status == PeerStatus.Online:
                online += 1
                if online == count:
                    seen.set()

    node.peer_status(node.spawn(watch))
    with trio.fail_after(WAIT):
        await seen.wait()
    node.peer_status(None)


def start_call(node: Pycos, where: Location, monitor: Task, name: str, *args: Any) -> Task:
    """A task on ``node`` that locates RPS ``name`` at ``where``, makes ``monitor``
    its monitor, calls it with ``args`` and returns the new task."""

    async def caller() -> Task:
        rps = await RPS.locate(name, where, timeout=5)
        assert rps is not None
        assert rps.monitor(monitor) == 0
        created = await rps(*args)
        assert isinstance(created, Task)
        return created

    return node.spawn(caller)


async def call(node: Pycos, where: Location, monitor: Task, name: str, *args: Any) -> Task:
    created = await start_call(node, where, monitor, name, *args).finish()
    assert isinstance(created, Task)
    return created


def check_lost(status: MonitorStatus, created: Task, server: Pycos) -> None:
    assert isinstance(status, MonitorStatus) and status.type is PeerLost
    assert status.info == created
    assert isinstance(status.value, str)
    assert "server" in status.value and str(server.location) in status.value


@pytest.mark.parametrize("fault", ["crash", "silent crash", "partition", "freeze"])
async def test_rps_monitor_hears_peer_lost_once_when_the_serving_node_is_lost(
    fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="client", limits=LIMITS) as client,
    ):
        watcher = Statuses(client)
        async with net.open_pycos(name="server", limits=LIMITS) as server:
            assert RPS(waits).register() == 0 and RPS(instant).register() == 0
            # With latency, what the server sends at one instant arrives together:
            # the instant task's status is read with the call's reply, before the
            # caller resumes.
            net.set_link(client, server, latency=0.005)
            assert await client.peer(server.location) == 0
            done = await call(client, server.location, watcher.task, "instant", 7)
            assert await done.finish(timeout=5) == 7
            slow = await call(client, server.location, watcher.task, "waits")
            await trio.testing.wait_all_tasks_blocked()
            assert watcher.kinds() == [StopIteration]  # the instant task's, and no other
            lost_at = trio.current_time()
            if fault == "crash":
                net.crash(server)
            elif fault == "silent crash":
                net.crash(server, silent=True)
            elif fault == "partition":
                net.partition(client, server)
            else:
                net.freeze(server)
            if "crash" not in fault:
                # The server lives on: when the link is back, its task ends, and its
                # real status must not reach the watcher after PeerLost.
                told_at = await watcher.wait_for(2)
                assert told_at - lost_at <= DETECTION
                net.heal()
                net.thaw(server)
                await peer_online(client, 1)  # the client re-peers (it opened the link)
                # A second monitor, from now on: both statuses travel on one
                # connection, the first watcher's first, so once the second has its
                # status the first one's has been dispatched (and dropped).
                second = Statuses(client, observe=slow)
                await second.monitoring.wait()
                assert slow.send("end") == 0
                await second.wait_for(1)
                assert [(st.type, st.value) for _, st in second.got] == [(StopIteration, "end")]
        if "crash" in fault:
            told_at = await watcher.wait_for(2)
            if fault == "crash":
                assert told_at == lost_at + 0.005  # a reset is seen at once
            else:
                assert told_at - lost_at <= DETECTION
        assert watcher.kinds() == [StopIteration, PeerLost], watcher.got
        check_lost(watcher.got[1][1], slow, server)
        start = trio.current_time()
        assert await slow.finish() is None  # no timeout: it must not wait at all
        assert trio.current_time() == start


async def test_rps_monitor_hears_peer_lost_when_the_node_is_lost_as_the_call_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The serving node crashes as soon as it has replied: the reset arrives right
    behind the reply, as the caller resumes with the new task."""
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="client", limits=LIMITS) as client,
    ):
        watcher = Statuses(client)
        crashed_at: list[float] = []
        async with net.open_pycos(name="server", limits=LIMITS) as server:

            async def crashes() -> None:
                crashed_at.append(trio.current_time())
                net.crash(server)  # its reply is already on the wire
                await trio.sleep_forever()

            assert RPS(crashes).register() == 0
            assert await client.peer(server.location) == 0
            caller = start_call(client, server.location, watcher.task, "crashes")
            await trio.sleep_forever()  # until the crash ends this block
        created = await caller.finish()
        assert await watcher.wait_for(1) == crashed_at[0]
        await trio.testing.wait_all_tasks_blocked()
        assert watcher.kinds() == [PeerLost], watcher.got
        check_lost(watcher.got[0][1], created, server)
        start = trio.current_time()
        assert await created.finish() is None
        assert trio.current_time() == start
