"""Review: a peer can attach any number of monitors to one of the node's tasks, and
each costs a scan of the task's monitor list (``Task._add_monitor``: ``monitor not in
self._monitors``).  n TASK_MONITOR requests (about 70 bytes each) cost n**2/2 Task
comparisons in the node's trio thread: 20,000 of them (1.4 MB) took 26 s of CPU here,
during which no other peer is served (heartbeats stall; peers see the node silent).
Channel subscriptions (``subscriber not in self._subscribers``) have the same shape.

The test counts comparisons rather than timing them.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from triopycos import Task
from triopycos.protocol.codec import Ref
from triopycos.protocol.messages import Kind
from triopycos.testing import VirtualNetwork

N = 2000


async def test_monitor_requests_of_a_peer_cost_linear_work(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    comparisons = 0
    original = Task.__eq__

    def counting_eq(self: Task, other: object) -> bool:
        nonlocal comparisons
        comparisons += 1
        return original(self, other)

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):

        async def keeper(task: Task) -> None:
            task.set_daemon()
            await task.receive()

        target = a.spawn(keeper)
        assert await b.peer(a.location) == 0
        assert b._peers is not None
        (conn,) = b._peers.by_id.values()
        monkeypatch.setattr(Task, "__eq__", counting_eq)
        for i in range(1, N + 1):
            monitor = Task._reference(b, Ref("task", b._node_id, i, "m", b.location))
            conn.send([Kind.TASK_MONITOR, 10**6 + i, target._task_id, monitor])
            if i % 500 == 0:
                await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.undo()
        assert target._monitors is not None and len(target._monitors) == N
        assert comparisons < 20 * N, f"{comparisons} comparisons for {N} monitor requests"
