"""Scale on the virtual network: discovery convergence and heartbeat cost as N grows.

Run: ``python bench/discovery_scale.py [--nodes 25 50 100 200 300] [--idle S]``

For each N, in a fresh process, under trio's ``MockClock`` (virtual time, autojump):
N nodes, each on its own virtual host of one /16 subnet, all with
``discover_peers=True`` (UDP broadcast announcements on the virtual network: nothing
leaves the process), links with ``--latency`` one way.  Measured:

* convergence: from the moment the last node has started until every node has the
  N-1 others as peers (virtual seconds, and the real time and CPU time the run took
  from the first start; a full mesh is N(N-1)/2 connections);
* heartbeat cost: then ``--idle`` virtual seconds with no traffic but heartbeats:
  frames that crossed the network per virtual second (in all and per connection),
  the CPU seconds the process spent per virtual second, and how each grows with N
  ("growth": the exponent k in cost ~ N^k between this N and the previous one; a
  full mesh makes k about 2 for the totals, about 0 per connection);
* the process's RSS at the end (every node and connection of the mesh in one
  process).

``measure`` is also what ``tests/test_scale.py`` runs, with a small N.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    emit_json,
    format_table,
    format_value,
    load_average,
    rss_bytes,
    run_worker,
    version,
)

DEFAULT_NODES = (25, 50, 100, 200, 300)
SECRET = "bench-scale"


@dataclass
class ScaleResult:
    nodes: int
    connections: int
    #: Virtual seconds from the last node's start until the mesh was complete.
    converge_virtual: float
    #: Real seconds and CPU seconds from the first start until then.
    converge_wall: float
    converge_cpu: float
    idle_virtual: float
    #: Frames (stream segments) that crossed the network in the idle window.
    idle_frames: int
    idle_bytes: int
    idle_cpu: float
    rss: float

    @property
    def frames_per_second(self) -> float:
        return self.idle_frames / self.idle_virtual

    @property
    def cpu_per_second(self) -> float:
        return self.idle_cpu / self.idle_virtual


async def measure(
    n: int, *, idle: float = 30.0, latency: float = 0.0005, seed: int = 1
) -> ScaleResult:
    """Run N discovering nodes on a virtual network (call it under a MockClock)."""
    import trio

    from triopycos import PeerStatus, Task
    from triopycos.testing import LinkConfig, VirtualNetwork

    async with VirtualNetwork(seed=seed, link=LinkConfig(latency=latency)) as net:
        subnet = net.subnet("10.1.0.0/16", "fd01::/64", name="scale")
        async with AsyncExitStack() as stack:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            complete = trio.Event()
            meshed = 0  # nodes that have all the others as peers

            async def count_peers(task: Task) -> None:
                nonlocal meshed
                online = 0
                while True:
                    status = await task.receive()
                    if isinstance(status, PeerStatus) and status.status == PeerStatus.Online:
                        online += 1
                        if online == n - 1:
                            meshed += 1
                            if meshed == n:
                                complete.set()

            nodes = []
            for i in range(n):
                node = await stack.enter_async_context(
                    net.open_pycos(name=f"n{i}", discover_peers=True, secret=SECRET, subnet=subnet)
                )
                watcher = node.spawn(count_peers)
                watcher.set_daemon()
                node.peer_status(watcher)
                nodes.append(node)
            started = trio.current_time()
            await complete.wait()
            converge_virtual = trio.current_time() - started
            converge_wall = time.perf_counter() - wall0
            converge_cpu = time.process_time() - cpu0

            await trio.sleep(1)  # the last handshakes' replies, the announcements' ends
            first = len(net.events)
            cpu1, t1 = time.process_time(), trio.current_time()
            await trio.sleep(idle)
            idle_cpu = time.process_time() - cpu1
            idle_virtual = trio.current_time() - t1
            data = [e for e in net.events[first:] if e.kind == "data"]
            gc.collect()
            rss = float(rss_bytes())
            if any(len(node.peers()) < n - 1 for node in nodes):
                raise RuntimeError("a peer was lost while idle: heartbeats failed")
            for node in nodes:
                node.terminate()
    return ScaleResult(
        nodes=n,
        connections=n * (n - 1) // 2,
        converge_virtual=converge_virtual,
        converge_wall=converge_wall,
        converge_cpu=converge_cpu,
        idle_virtual=idle_virtual,
        idle_frames=len(data),
        idle_bytes=sum(e.nbytes for e in data),
        idle_cpu=idle_cpu,
        rss=rss,
    )


def worker(n: int, idle: float, latency: float) -> dict[str, float]:
    import trio
    import trio.testing

    result = trio.run(
        lambda: measure(n, idle=idle, latency=latency),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    return {k: float(v) for k, v in asdict(result).items()}


def _growth(prev: dict[str, float] | None, cur: dict[str, float], key: str) -> str:
    """ " (^k)": ``cur[key]`` is ``prev[key]`` times (N ratio)^k."""
    if prev is None or prev[key] <= 0 or cur[key] <= 0:
        return ""
    return f" (^{math.log(cur[key] / prev[key]) / math.log(cur['n'] / prev['n']):.1f})"


def drive(args: argparse.Namespace) -> int:
    script = str(Path(__file__).resolve())
    rows: list[list[str]] = []
    prev: dict[str, float] | None = None
    for n in args.nodes:
        started = time.perf_counter()
        r = run_worker(
            [
                script,
                "--worker",
                str(n),
                "--idle",
                f"{args.idle:g}",
                "--latency",
                f"{args.latency:g}",
            ],
            timeout=args.timeout,
        )
        print(f"N={n}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        v = {
            "n": float(n),
            "wall": r["converge_wall"],
            "frames": r["idle_frames"] / r["idle_virtual"],
            "cpu": r["idle_cpu"] / r["idle_virtual"],
        }
        conns = r["connections"]
        rows.append(
            [
                str(n),
                f"{conns:,.0f}",
                f"{r['converge_virtual'] * 1e3:.1f}",
                f"{v['wall']:.2f}" + _growth(prev, v, "wall"),
                f"{v['frames']:,.0f}" + _growth(prev, v, "frames"),
                f"{v['frames'] / conns:.3f}",
                f"{v['cpu'] * 1e3:.1f}" + _growth(prev, v, "cpu"),
                f"{v['cpu'] / conns * 1e6:.1f}",
                format_value(r["rss"] / 1e6),
            ]
        )
        prev = v
    headers = [
        "N",
        "connections",
        "converge (virtual ms)",
        "converge (real s)",
        "heartbeat frames/s",
        "per conn",
        "CPU ms per s",
        "per conn (µs)",
        "RSS MB",
    ]
    print(
        f"Virtual network, MockClock: N discovering nodes (UDP broadcast), full mesh; links "
        f"{args.latency * 1e3:g} ms one way; heartbeat window {args.idle:g} virtual s "
        "(default peer_timeout 15 s: a PING on a connection idle for 5 s).\n"
        "(^k): cost grows like N^k from the previous row.  trio "
        f"{version('trio')}; load average {load_average()}\n"
    )
    print(format_table(headers, rows))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=list(DEFAULT_NODES))
    parser.add_argument("--idle", type=float, default=30.0, help="virtual seconds of idling")
    parser.add_argument("--latency", type=float, default=0.0005, help="one-way link latency, s")
    parser.add_argument("--timeout", type=float, default=1800.0, help="real seconds per N")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 2 for n in args.nodes) or args.idle <= 0:
        parser.error("--nodes must be >= 2 and --idle > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        emit_json(worker(args.worker, args.idle, args.latency))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
