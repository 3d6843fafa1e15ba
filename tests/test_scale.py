"""The scale benchmark's virtual-network run (bench/discovery_scale.py) works: a
modest mesh of discovering nodes converges, and idle connections cost what the
heartbeat rule says (a PING on a connection idle for a third of peer_timeout, and
its PONG), no more."""

from __future__ import annotations

import trio.testing

from bench.discovery_scale import measure


async def test_a_discovering_mesh_converges_and_idles_on_heartbeats_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await measure(12, idle=20, latency=0.001)
    assert result.connections == 66
    # Announce, connect, handshake: a few round trips of 2 ms, not heartbeat periods.
    assert result.converge_virtual < 0.1
    # Default peer_timeout 15 s: every 5 s an idle connection carries at least one
    # PING and its PONG (a side that has just sent a PONG skips its own PING), at
    # most one PING each way and their PONGs.
    per_connection_per_second = result.idle_frames / result.connections / result.idle_virtual
    assert 2 / 5 * 0.95 <= per_connection_per_second <= 4 / 5 * 1.05
