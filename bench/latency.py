"""Latency under load: the distribution of ``deliver`` round trips between two
triopycos processes, idle and while the same two nodes are busy with other traffic.

Run: ``python bench/latency.py [--rounds N] [--quick]``

Every round starts a fresh server process (a triopycos node with a target task that
only receives, the one-way server task of ``bench/remote.py``, and a ``dest_path``)
and a fresh client process, both on 127.0.0.1.  The client times every single
``await target.deliver(i)`` (``time.perf_counter`` around the call) in three cases,
one after the other, on the same connection:

* ``idle``: nothing else runs;
* ``stream``: another task of the client streams one-way ``send``s to the server's
  other task over the same connection, as fast as it can, the way the one-way
  benchmark of ``bench/remote.py`` does (1000 sends, then a yield; a marker every
  4000 messages and at most two markers unanswered, so at most about 8000 messages
  are in flight).  Its rate while the delivers ran is reported too;
* ``files``: another task of the client sends a 256 MiB file to the server with
  ``send_file`` (``overwrite=True``), again and again (at most ``--transfers``
  times); only the delivers that started and ended while a transfer ran are kept.
  Files travel on connections of their own: this shows whether the message
  connection's latency holds while one runs.

The raw trio floor (``--systems raw``) runs the ``idle`` case only: a 4-byte
length-prefixed frame and its echo, timed one by one the same way.

Each case gets a warm-up, is bounded in count and in time, and reports p50, p99,
p99.9 and the largest round trip (nearest rank over its samples), per round; the
table shows the median of each over the rounds.  Every process has a watchdog and
only loopback is used.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import files, remote
from bench._common import (
    HOST,
    WorkerError,
    announce_ready,
    arm_watchdog,
    clock,
    emit_json,
    format_table,
    format_value,
    load_average,
    median,
    round_args,
    round_parser,
    run_with_server,
    version,
)

if TYPE_CHECKING:
    from triopycos import Pycos
    from triopycos import Task as TrioTask


TARGET_NAME = "bench_latency_target"
SYSTEMS = ("triopycos", "raw")
CASES = ("idle", "stream", "files")
CASE_LABELS = {
    "idle": "idle",
    "stream": "while a task streams one-way sends",
    "files": "while send_file runs",
}
#: (key, label): the statistics of each case's samples, in µs.
PERCENTILES: tuple[tuple[str, str, float], ...] = (
    ("p50", "p50", 0.50),
    ("p99", "p99", 0.99),
    ("p999", "p99.9", 0.999),
    ("max", "max", 1.0),
)
#: Timeout of each deliver (a deliver that gives 0 or raises is a failure).
DELIVER_TIMEOUT = remote.OP_TIMEOUT
#: How long the client lets the stream run before it starts timing delivers.
SETTLE = 0.05


@dataclass(frozen=True)
class Sizes:
    #: Delivers per case (at most).
    delivers: int
    #: Each case stops after this many seconds, whatever its count.
    cap: float
    #: The file sent in the ``files`` case, and the most transfers made.
    file_mib: int
    transfers: int


DEFAULT = Sizes(delivers=20_000, cap=5.0, file_mib=256, transfers=8)
QUICK = Sizes(delivers=1_000, cap=1.0, file_mib=16, transfers=4)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``ordered`` (q in (0, 1]); NaN if empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(case: str, samples: list[float], failed: int) -> dict[str, float]:
    ordered = sorted(samples)
    out = {f"{case}.{key}": percentile(ordered, q) for key, _, q in PERCENTILES}
    out[f"{case}.n"] = float(len(samples))
    out[f"{case}.failed"] = float(failed)
    return out


# -- triopycos --------------------------------------------------------------------------


async def timed_delivers(
    target: TrioTask, n: int, cap: float, keep: Callable[[], bool] | None = None
) -> tuple[list[float], int]:
    """Up to ``n`` delivers for at most ``cap`` seconds: the round trips (seconds) of
    those that returned 1 (and, with ``keep``, for which ``keep()`` was true before
    and after), and the count of failures.  Stops early once ``keep()`` stays false
    after having been true (the load ended)."""
    samples: list[float] = []
    failed = 0
    stop_at = clock() + cap
    deliver = target.deliver
    seen_load = False
    for i in range(n):
        loaded = keep is None or keep()
        seen_load = seen_load or loaded
        if keep is not None and seen_load and not loaded:
            break
        start = clock()
        ok = await deliver(i, timeout=DELIVER_TIMEOUT)
        end = clock()
        if ok != 1:
            failed += 1
        elif loaded and (keep is None or keep()):
            samples.append(end - start)
        if end > stop_at:
            break
    return samples, failed


class Streamer:
    """The ``stream`` case's load: a task that sends one-way messages to the one-way
    server task until told to stop, with ``bench/remote.py``'s flow control: a marker
    after every ``window`` batches of BATCH sends, at most two unanswered."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.stop = False
        self.sent = 0
        self.refused = 0
        self.error = ""

    async def run(self, server: TrioTask, task: TrioTask) -> None:
        import trio

        if await server.deliver(("start", task), timeout=remote.OP_TIMEOUT) != 1:
            self.error = "the server did not take 'start'"
            return
        send = server.send
        batches = marker = 0
        unacked: list[int] = []
        while not self.stop:
            base = self.sent
            for i in range(base, base + remote.BATCH):
                if send(i) != 0:
                    self.refused += 1
            self.sent += remote.BATCH
            await trio.lowlevel.checkpoint()
            batches += 1
            if batches % self.window == 0:
                if send(("sync", marker)) == 0:
                    unacked.append(marker)
                marker += 1
                if len(unacked) > 1:
                    ack = await task.receive(timeout=remote.OP_TIMEOUT)
                    if ack != ("synced", unacked.pop(0)):
                        self.error = f"flow control: got {ack!r}"
                        return
        for _ in unacked:  # drain the answers, so the task's mailbox ends empty
            await task.receive(timeout=remote.OP_TIMEOUT)


class FileLoad:
    """The ``files`` case's load: ``send_file`` of one file, again and again."""

    def __init__(self) -> None:
        self.stop = False
        self.running = False
        self.done = 0
        self.seconds = 0.0
        self.error = ""

    async def run(self, node: Pycos, loc: Any, path: str, transfers: int) -> None:
        mtime = os.stat(path).st_mtime_ns
        for k in range(transfers):
            if self.stop:
                break
            # A new modification time each time: the receiver would answer 1 (the same
            # file is there already) to a second send of the same file.
            os.utime(path, ns=(mtime, mtime + k * 1_000_000_000))
            self.running = True
            start = clock()
            try:
                result = await node.send_file(loc, path, overwrite=True, timeout=60)
            finally:
                self.running = False
            if result != 0:
                self.error = f"send_file returned {result!r}"
                return
            self.seconds += clock() - start
            self.done += 1


def triopycos_client(port: int, sizes: Sizes, path: str, window: int) -> dict[str, float]:
    import trio

    from triopycos import Location, Task

    results: dict[str, float] = {}
    loc = Location(HOST, port)
    size = os.path.getsize(path)

    async def client(node: Pycos, task: Task) -> None:
        target = await Task.locate(TARGET_NAME, loc, timeout=remote.OP_TIMEOUT)
        server = await Task.locate(remote.SERVER_NAME, loc, timeout=remote.OP_TIMEOUT)
        if target is None or server is None:
            raise RuntimeError(f"triopycos: the server's tasks not found at {loc}")
        await timed_delivers(target, max(100, sizes.delivers // 20), sizes.cap)  # warm-up

        samples, failed = await timed_delivers(target, sizes.delivers, sizes.cap)
        results.update(summarize("idle", samples, failed))

        streamer = Streamer(window)
        streaming = node.spawn(streamer.run, server)
        await trio.sleep(SETTLE)
        sent_before, start = streamer.sent, clock()
        samples, failed = await timed_delivers(target, sizes.delivers, sizes.cap)
        rate = (streamer.sent - sent_before) / (clock() - start)
        streamer.stop = True
        await streaming.finish(timeout=remote.OP_TIMEOUT + 5)
        if streamer.error or streamer.refused:
            raise RuntimeError(f"stream: {streamer.error or f'{streamer.refused} refused'}")
        results.update(summarize("stream", samples, failed))
        results["stream.rate"] = rate

        load = FileLoad()
        sending = node.spawn(load.run, node, loc, path, sizes.transfers)
        samples, failed = await timed_delivers(
            target, sizes.delivers, sizes.cap, keep=lambda: load.running
        )
        load.stop = True
        await sending.finish(timeout=120)
        if load.error:
            raise RuntimeError(f"files: {load.error}")
        results.update(summarize("files", samples, failed))
        results["files.transfers"] = float(load.done)
        results["files.throughput"] = size * load.done / load.seconds if load.seconds else math.nan
        await server.deliver(("quit",), timeout=remote.OP_TIMEOUT)

    async def main() -> None:
        async with remote.client_node("bench-latency-client", loc) as node:
            await node.spawn(client, node).finish()

    trio.run(main)
    if "files.p50" not in results:
        raise RuntimeError("triopycos client task failed (see the warning above)")
    return results


async def target_body(task: TrioTask) -> None:
    """The deliver target: takes every message, does nothing with it."""
    task.register(TARGET_NAME)
    receive = task.receive
    while True:
        await receive()


def triopycos_serve(dest: str, deadline: float) -> None:
    import trio

    async def main() -> None:
        with trio.move_on_after(deadline):
            async with remote.bench_node("bench-latency-server", dest_path=dest) as node:
                node.spawn(target_body).set_daemon()
                node.spawn(remote.async_server).set_daemon()
                await trio.lowlevel.checkpoint()  # both tasks registered their names
                announce_ready(node.location.addr, node.location.port)
                await trio.sleep_forever()  # until the driver closes our stdin, or deadline

    trio.run(main)


# -- raw trio floor ---------------------------------------------------------------------


def raw_client(port: int, sizes: Sizes) -> dict[str, float]:
    import trio

    results: dict[str, float] = {}

    async def echoes(stream: trio.abc.Stream, reader: remote.FrameReader, n: int) -> list[float]:
        samples: list[float] = []
        stop_at = clock() + sizes.cap
        for i in range(n):
            request = remote.frame(b"P", b"%d" % i)
            start = clock()
            await stream.send_all(request)
            reply = await reader.one()
            end = clock()
            if reply != request[4:]:
                raise RuntimeError("raw: wrong echo")
            samples.append(end - start)
            if end > stop_at:
                break
        return samples

    async def main() -> None:
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            reader = remote.FrameReader(stream)
            await echoes(stream, reader, max(100, sizes.delivers // 20))
            results.update(summarize("idle", await echoes(stream, reader, sizes.delivers), 0))
            await stream.send_all(remote.frame(b"Q"))

    trio.run(main)
    return results


# -- driver -----------------------------------------------------------------------------


def run_round(
    system: str,
    *,
    quick: bool,
    deadline: float,
    payload: str,
    dest_root: str,
    window: int = remote.WINDOW,
) -> dict[str, float]:
    """One round of one system (also what ``bench/run.py`` calls); ``payload`` is
    the file the ``files`` case sends, received under a fresh folder of
    ``dest_root``."""
    script = str(Path(__file__).resolve())
    common = [
        "--deadline",
        f"{deadline:g}",
        "--stream-window",
        str(window),
        *(["--quick"] if quick else []),
    ]
    dest = tempfile.mkdtemp(prefix="latency-dest-", dir=dest_root)
    try:
        os.sync()  # no earlier writes being written back while we measure

        def client_argv(port: int) -> list[str]:
            return [script, "--client", system, "--port", str(port), "--file", payload, *common]

        return run_with_server(
            [script, "--serve", system, "--dest", dest, *common], client_argv, timeout=deadline + 10
        )
    finally:
        shutil.rmtree(dest, ignore_errors=True)


#: Median of one system's values of one key, NaN if none.
MedianOf = Callable[[str, str], float]


def table(value: MedianOf, systems: Sequence[str]) -> str:
    """A row per system and case: p50, p99, p99.9 and max in µs, and how many
    times the idle p50 each is."""
    headers = ["deliver round trip", *(label + " (µs)" for _, label, _ in PERCENTILES)]
    headers += ["p99 / idle p50", "samples"]
    rows: list[list[str]] = []
    for system in systems:
        idle_p50 = value(system, "idle.p50")
        for case in CASES if system == "triopycos" else ("idle",):
            name = "raw trio echo" if system == "raw" else "triopycos"
            cells = [f"{name}, {CASE_LABELS[case]}"]
            cells += [format_value(value(system, f"{case}.{key}") * 1e6) for key, *_ in PERCENTILES]
            spread = value(system, f"{case}.p99") / idle_p50
            cells.append("n/a" if math.isnan(spread) else f"{spread:.1f}")
            n = value(system, f"{case}.n")
            cells.append("n/a" if math.isnan(n) else f"{n:,.0f}")
            rows.append(cells)
    return format_table(headers, rows)


def load_note(value: MedianOf) -> str:
    rate = value("triopycos", "stream.rate")
    mbps = value("triopycos", "files.throughput")
    transfers = value("triopycos", "files.transfers")
    return (
        f"load: the stream ran at {format_value(rate)} msg/s while the delivers ran; "
        f"send_file at {format_value(mbps / 1e6)} MB/s ({format_value(transfers)} transfers)"
    )


def drive(args: argparse.Namespace) -> int:
    started = clock()
    systems = list(args.systems)
    collected: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
    errors = 0
    load_before = load_average()
    sizes = QUICK if args.quick else DEFAULT
    work = tempfile.mkdtemp(prefix="bench-latency-")
    try:
        payload, _ = files.make_payload(work, sizes.file_mib)
        for rnd in range(args.rounds):
            shift = rnd % len(systems)
            for system in systems[shift:] + systems[:shift]:
                try:
                    data = run_round(
                        system,
                        quick=args.quick,
                        deadline=args.deadline,
                        payload=payload,
                        dest_root=work,
                        window=args.stream_window,
                    )
                except (WorkerError, subprocess.SubprocessError) as exc:
                    errors += 1
                    print(f"round {rnd + 1}, {system}: FAILED: {exc}", file=sys.stderr)
                    continue
                for key, v in data.items():
                    collected[system][key].append(v)
            done = f"round {rnd + 1}/{args.rounds} done ({clock() - started:.0f} s)"
            print(done, file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def value(system: str, key: str) -> float:
        finite = [v for v in collected.get(system, {}).get(key, []) if math.isfinite(v)]
        return median(finite) if finite else math.nan

    print(
        f"deliver round trips under load: median over {args.rounds} round(s) of each "
        f"round's percentiles{' (--quick sizes)' if args.quick else ''}; up to "
        f"{sizes.delivers:,} delivers or {sizes.cap:g} s per case\n"
        f"python {platform.python_version()}, trio {version('trio')}; {os.cpu_count()} "
        f"CPUs; load average {load_before} before, {load_average()} after\n"
    )
    print(table(value, systems))
    if "triopycos" in systems:
        print("\n" + load_note(value))
    failed = sum(
        sum(v) for keys in collected.values() for k, v in keys.items() if k.endswith(".failed")
    )
    if failed:
        print(f"\n{failed:,.0f} delivers failed")
    print(f"\ntotal time {clock() - started:.0f} s")
    return 1 if errors or failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = round_parser(__doc__, SYSTEMS, deadline=90.0)
    parser.add_argument(
        "--stream-window",
        type=int,
        default=remote.WINDOW,
        help="the stream's flow control: a marker every STREAM_WINDOW x 1000 messages, at "
        f"most two unanswered (default {remote.WINDOW}): what the stream has in flight, "
        "which a deliver waits behind",
    )
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = round_args(parser, argv)
    if args.stream_window < 1:
        parser.error("--stream-window must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    if args.serve:
        arm_watchdog(args.deadline + 5, exit_on_stdin_eof=True)
        if args.serve == "triopycos":
            triopycos_serve(args.dest, args.deadline)
        else:
            remote.raw_serve(args.deadline)
        return 0
    if args.client:
        arm_watchdog(args.deadline)
        if args.client == "triopycos":
            emit_json(triopycos_client(args.port, sizes, args.file, args.stream_window))
        else:
            emit_json(raw_client(args.port, sizes))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
