"""Review: pushed RPS results (``RemoteOps._results``) are an LRU of 65536 entries
that any peer can fill with unsolicited TASK_RESULT frames.  An entry evicted while
a ``finish()`` waits on it strands that waiter: the real result arrives later into
a fresh entry, and ``on_offline`` only sees entries still in the table, so
``finish()`` without a timeout never returns, even after the serving node is lost.
"""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing

from triopycos import RPS, Task
from triopycos._remote import _RESULTS_KEPT
from triopycos.protocol.messages import Kind
from triopycos.testing import VirtualNetwork


async def test_finish_of_rps_task_survives_results_flood(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="server") as server,
        net.open_pycos(name="flooder") as flooder,
        net.open_pycos(name="client") as client,
    ):

        async def register() -> int:
            return RPS(slow).register()  # on the server node

        assert await server.spawn(register).finish() == 0
        assert await client.peer(server.location) == 0
        assert await client.peer(flooder.location) == 0

        async def caller() -> object:
            rps = await RPS.locate("slow", server.location, timeout=5)
            assert rps is not None
            created = await rps()
            assert isinstance(created, Task)
            return await created.finish()  # no timeout: pycos's usual call

        waiting = client.spawn(caller)
        await trio.testing.wait_all_tasks_blocked()

        # Another authenticated peer pushes results for tasks of its own.
        assert flooder._peers is not None
        (conn,) = [c for c in flooder._peers.by_id.values() if c.name == "client"]
        for task_id in range(1, _RESULTS_KEPT + 2):
            conn.send([Kind.TASK_RESULT, task_id, None])
            if task_id % 4096 == 0:
                await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()

        release.set()  # the server's task ends; its result is pushed to the client
        with trio.move_on_after(30) as scope:
            assert await waiting.finish() == "done"
        assert not scope.cancelled_caught, "finish() of the RPS task never returned"
