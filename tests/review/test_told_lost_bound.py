"""Review: "each monitor hears exactly once" after PeerLost rests on
``RemoteOps._told_lost``, an LRU of 4096 (node, task) entries.  When a peer that
held more than 4096 watched tasks is lost and comes back (a healed partition: same
incarnation), the real statuses of the oldest watched tasks are no longer recognised
and reach their monitors after PeerLost: two exit statuses for one task.
"""

from __future__ import annotations

from collections import Counter

import trio
import trio.testing

from triopycos import Limits, MonitorStatus, PeerLost, PeerStatus, Task
from triopycos._remote import _TOLD_LOST_KEPT
from triopycos.protocol.codec import Ref
from triopycos.testing import VirtualNetwork

LIMITS = Limits(peer_timeout=6.0, reconnect_delay=0.5, connect_timeout=3.0)
K = _TOLD_LOST_KEPT + 4


async def test_monitor_hears_once_after_a_long_partition_with_many_watched_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    end = trio.Event()

    async def worker() -> str:
        await end.wait()
        return "done"

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="client", limits=LIMITS) as client,
        net.open_pycos(name="server", limits=LIMITS) as server,
    ):
        workers = [server.spawn(worker) for _ in range(K)]
        assert await client.peer(server.location) == 0
        got: list[MonitorStatus] = []
        monitoring = trio.Event()
        all_lost = trio.Event()

        async def watcher(task: Task) -> None:
            task.set_daemon()
            for remote in workers:
                ref = Task._reference(client, _ref_of(remote))
                assert await task.monitor(ref) == 0
            monitoring.set()
            while True:
                message = await task.receive()
                if isinstance(message, MonitorStatus):
                    got.append(message)
                    if len(got) == K:
                        all_lost.set()

        client.spawn(watcher)
        with trio.fail_after(600):
            await monitoring.wait()

        online = trio.Event()

        async def status(task: Task) -> None:
            task.set_daemon()
            while True:
                if (await task.receive()).status == PeerStatus.Online:
                    online.set()

        net.partition(client, server)
        with trio.fail_after(60):
            await all_lost.wait()
        assert {s.type for s in got} == {PeerLost}
        client.peer_status(client.spawn(status))  # the peer is offline now
        net.heal()
        with trio.fail_after(60):
            await online.wait()
        end.set()  # every worker ends; their statuses travel to the client
        await trio.sleep(5)
        per_task = Counter(s.info._task_id for s in got if isinstance(s.info, Task))
        twice = [tid for tid, n in per_task.items() if n > 1]
        assert not twice, f"{len(twice)} tasks reported twice (PeerLost, then real status)"


def _ref_of(task: Task) -> Ref:
    return task._triopycos_ref_()
