"""Review: a peer can make the node dial any number of addresses at once.  A
TASK_MONITOR request for an ended task whose monitor is a reference to a made-up node
makes the node queue the exit status for it and start a connection to the
reference's location (``RemoteOps.task_send`` -> ``_send_when_reached``): one service
task and one connection attempt per distinct location, none capped, each held for
``connect_timeout``.  2,000 small frames give 2,000 simultaneous dials; over real TCP
that is 2,000 descriptors, past the usual limit of 1,024, after which the node's own
``accept`` fails with EMFILE and real peers are kept out.
"""

from __future__ import annotations

import os

import trio
import trio.testing

from triopycos import Location, Task
from triopycos.protocol.codec import Ref
from triopycos.protocol.messages import Kind
from triopycos.testing import VirtualNetwork

N = 2000


async def test_a_peer_cannot_start_unbounded_outbound_dials(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="victim") as victim,
        net.open_pycos(name="peer") as peer,
    ):

        async def quick() -> int:
            return 1

        ended = victim.spawn(quick)
        await ended.finish()
        sink = net.add_host("sink")
        net.partition(victim, sink)  # connections there hang until connect_timeout
        assert await peer.peer(victim.location) == 0
        assert peer._peers is not None and victim._peers is not None
        (conn,) = peer._peers.by_id.values()
        for i in range(1, N + 1):
            fake = Ref("task", os.urandom(16), 1, "m", Location(sink.ipv4, 1000 + i))
            conn.send([Kind.TASK_MONITOR, i, ended._task_id, Task._reference(peer, fake)])
        await trio.sleep(1)
        dialling = len(victim._peers._connecting)
        assert dialling <= 64, f"{dialling} simultaneous outbound dials started by one peer"
