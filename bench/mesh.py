"""A full mesh of node processes on loopback, all exchanging messages.

Run: ``python bench/mesh.py [--nodes 12] [--messages M] [--rounds R]``

The driver starts N node processes (``open_pycos`` on 127.0.0.1, a free port, no
discovery), each with a task registered as ``mesh_sink``.  Then, each round:

* convergence: the driver gives every node the list of the others' ports at once;
  every node calls ``peer()`` for every other (so every pair also connects from both
  sides at once, and one of the two connections is kept) and reports when it has
  N-1 peers.  Convergence time = from the driver handing out the list to the last
  node having all its peers (``time.monotonic``, one clock for all the processes
  of the machine);
* exchange: the driver says "go" to all; every node locates the other nodes' sinks
  and sends M small messages to each of them, round robin, yielding after every
  1000 sends; every sink notes when it has all M messages of each sender.
  Per pair (sender -> receiver) throughput = M / (that pair's last message -> go);
  aggregate = N (N-1) M / (the last pair done -> go).

With N processes on a 2-core machine the processes share the CPUs: the aggregate
is what the machine does, the per-pair rates are its share.  Only loopback is used;
every process has a watchdog and the driver kills what is left in a ``finally``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    WorkerError,
    arm_watchdog,
    format_table,
    format_value,
    load_average,
    stop_process,
    version,
    worker_env,
)

SECRET = "bench-mesh"
SINK = "mesh_sink"
BATCH = 1000
#: Seconds any one step may take (each node process has a watchdog of its own).
STEP_TIMEOUT = 120.0


# -- node processes ---------------------------------------------------------------------
#
# Lines on stdin: "peers M PORT...", "go", "quit".  Lines on stdout: "ready PORT",
# "converged T", "received T T_1 ... T_N", with T = time.monotonic() (T_k: when the
# messages of node k were all in, -1 for itself).


def _say(*words: object) -> None:
    print(*words, flush=True)


def node_main(index: int, count: int) -> None:
    import trio

    from triopycos import Location, PeerStatus, Task, open_pycos

    async def main() -> None:
        async with open_pycos(
            name=f"mesh{index}", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            expected = 0
            done: list[float] = [-1.0] * count
            all_in = trio.Event()
            remaining = count - 1

            async def sink(task: Task) -> None:
                nonlocal remaining
                task.register(SINK)
                counts = [0] * count
                while True:
                    sender = await task.receive()
                    counts[sender] += 1
                    if counts[sender] == expected:
                        done[sender] = time.monotonic()
                        remaining -= 1
                        if remaining == 0:
                            all_in.set()

            meshed = trio.Event()

            async def watch(task: Task) -> None:
                online = 0
                while True:
                    status = await task.receive()
                    if isinstance(status, PeerStatus) and status.status == PeerStatus.Online:
                        online += 1
                        if online == count - 1:
                            meshed.set()

            node.spawn(sink).set_daemon()
            watcher = node.spawn(watch)
            watcher.set_daemon()
            node.peer_status(watcher)
            _say("ready", node.location.port)
            while True:
                words = (await trio.to_thread.run_sync(sys.stdin.readline)).split()
                if not words or words[0] == "quit":
                    break
                if words[0] == "peers":
                    expected = int(words[1])
                    ports = [int(p) for p in words[2:]]
                    async with trio.open_nursery() as nursery:
                        for port in ports:
                            if port != node.location.port:
                                nursery.start_soon(node.peer, Location(HOST, port))
                    await meshed.wait()
                    _say("converged", time.monotonic())
                elif words[0] == "go":
                    targets = []
                    for port in ports:
                        if port != node.location.port:
                            target = await Task.locate(SINK, Location(HOST, port), timeout=30)
                            if target is None:
                                raise RuntimeError(f"no sink at port {port}")
                            targets.append(target)
                    sent = 0
                    for _ in range(expected):
                        for target in targets:
                            if target.send(index) != 0:
                                raise RuntimeError("a send was refused")
                        sent += len(targets)
                        if sent >= BATCH:
                            sent = 0
                            await trio.lowlevel.checkpoint()
                    await all_in.wait()
                    _say("received", time.monotonic(), *done)
            node.terminate()

    trio.run(main)


# -- driver -----------------------------------------------------------------------------


class Mesh:
    """The node processes, and their lines."""

    def __init__(self, count: int) -> None:
        script = str(Path(__file__).resolve())
        self.procs: list[subprocess.Popen[str]] = []
        try:
            for i in range(count):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, script, "--node", str(i), "--nodes", str(count)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=worker_env(),
                    )
                )
            self.ports = [int(self.expect(p, "ready")[0]) for p in self.procs]
        except BaseException:
            self.close()
            raise

    def tell_all(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def expect(self, proc: subprocess.Popen[str], word: str) -> list[str]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        words = line.split()
        if not words or words[0] != word:
            raise WorkerError(f"expected {word!r} from a node, got {line!r} ({proc.poll()})")
        return words[1:]

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                except OSError:
                    pass
        for proc in self.procs:
            stop_process(proc)


def run_round(mesh: Mesh, messages: int) -> tuple[float, float, list[float]]:
    """(convergence s, exchange s, per-pair msg/s) of one round."""
    ports = " ".join(map(str, mesh.ports))
    start = time.monotonic()
    mesh.tell_all(f"peers {messages} {ports}")
    converged = max(float(mesh.expect(p, "converged")[0]) for p in mesh.procs)
    go = time.monotonic()
    mesh.tell_all("go")
    last = 0.0
    rates: list[float] = []
    for receiver in mesh.procs:
        words = [float(w) for w in mesh.expect(receiver, "received")]
        last = max(last, words[0])
        rates += [messages / (t - go) for t in words[1:] if t >= 0]
    return converged - start, last - go, rates


def drive(args: argparse.Namespace) -> int:
    n = args.nodes
    conv: list[float] = []
    total: list[float] = []
    pairs: list[float] = []
    load_before = load_average()
    for rnd in range(args.rounds):
        started = time.monotonic()
        mesh = Mesh(n)
        try:
            c, t, rates = run_round(mesh, args.messages)
        finally:
            mesh.close()
        conv.append(c)
        total.append(t)
        pairs += rates
        print(
            f"round {rnd + 1}: converged in {c * 1e3:.0f} ms, exchange {t:.2f} s "
            f"({time.monotonic() - started:.0f} s with start-up)",
            file=sys.stderr,
        )
    moved = n * (n - 1) * args.messages
    print(
        f"Full mesh of {n} node processes on 127.0.0.1; {args.messages:,} messages per "
        f"ordered pair ({moved:,} in all) per round; median of {args.rounds} round(s); "
        f"{os.cpu_count()} CPUs, load average {load_before} before, {load_average()} after; "
        f"trio {version('trio')}\n"
    )
    rows = [
        ["convergence: all connections up (ms)", format_value(statistics.median(conv) * 1e3)],
        ["exchange: every message in (s)", format_value(statistics.median(total))],
        ["aggregate throughput (msg/s)", format_value(moved / statistics.median(total))],
        ["per pair, median (msg/s)", format_value(statistics.median(pairs))],
        ["per pair, slowest (msg/s)", format_value(min(pairs))],
        ["per pair, fastest (msg/s)", format_value(max(pairs))],
    ]
    print(format_table(["", "value"], rows))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--messages", type=int, default=20_000, help="per ordered pair")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.messages < 1 or args.rounds < 1:
        parser.error("--nodes >= 2, --messages and --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.node is not None:
        arm_watchdog(3 * STEP_TIMEOUT)
        node_main(args.node, args.nodes)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
