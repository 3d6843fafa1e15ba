"""Every benchmark in one run: triopycos, pycos 4.12.2, Pyro5 and the raw trio floor,
side by side.

Run: ``python bench/run.py [--rounds N] [--quick] [--only GROUP ...] [--json FILE]``

Each round runs, for every system (the order rotates from round to round so that no
system always runs first, or right after the same other one):

* ``remote`` (``bench/remote.py``): a server process and a client process on
  127.0.0.1: one-way ``send`` (small and 4 KiB), ``deliver`` round trip, send/receive
  ping-pong, ``Task.locate`` at a location, RPS call to result (and lost results),
  channel fan-out to 3 subscribers; the raw floor is trio TCP with 4-byte
  length-prefixed frames (one-way batches and echoes).
* ``peers`` (``bench/peers.py``): one-way messages and call round trips against
  Pyro5 (``@oneway`` and a call), pycos (default and ``stream_send=True``) and the
  floor, plain and with TLS (certificates from trustme, made once per run).
* ``latency`` (``bench/latency.py``): the distribution (p50, p99, p99.9, max) of
  ``deliver`` round trips, idle, while another task streams one-way messages over
  the same connection, and while ``send_file`` sends 256 MiB files between the same
  nodes; the floor's idle echo beside it.
* ``files`` (``bench/files.py``): ``send_file`` of one file (256 MiB) between two
  processes; the floor is plain trio TCP copying the file.
* ``local`` (``bench/local.py``): one process: send/receive (burst and yielding),
  ping-pong between two tasks, spawn + finish.
* ``memory`` (``bench/memory.py``): RSS per task parked in ``receive`` and per idle
  (suspended) task, of 50,000 tasks, with bare trio's figures (tasks parked on a
  memory channel's receive, or in ``sleep_forever``) as the floor; RSS per connected
  peer.

The main table shows the median over the rounds of each number, the ratio to pycos
(> 1: triopycos is better, for rates and times alike) and, where there is a floor,
how far triopycos is from it ("x floor": triopycos's cost over the floor's, 1.00 =
at the floor); then the ``peers`` and ``latency`` tables; then the targets of
issues 9 and 21 with their status.  Everything runs on loopback only; nothing
discovers peers.
"""

from __future__ import annotations

import argparse
import json
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
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import files, latency, local, memory, peers, remote
from bench._common import (
    Metric,
    WorkerError,
    clock,
    format_table,
    format_value,
    load_average,
    make_tls_files,
    median,
    ratio,
    version,
)

GROUPS = ("remote", "peers", "latency", "files", "local", "memory")
SYSTEMS = ("triopycos", "pycos", "pycos-stream", "pyro5", "raw")
#: Groups with a table of their own (not rows of the main one).
OWN_TABLES = ("peers", "latency")
#: Memory rows with a bare-trio floor.
MEMORY_FLOORS = ("idle_task", "idle_total", "suspended_task")


@dataclass(frozen=True)
class Row:
    """One line of the table: ``key`` in the collected results of each system."""

    key: str
    metric: Metric
    #: The key of the raw floor's value, if it has one.
    floor: str | None = None
    #: The key of pycos's value (local benchmarks: pycos always runs generators).
    pycos: str | None = None


def _rows() -> list[Row]:
    rows: list[Row] = []
    for m in remote.METRICS:
        has_floor = m.key in ("send_small", "send_4k", "deliver", "ping_pong", "locate")
        rows.append(Row(f"remote.{m.key}", m, f"remote.{m.key}" if has_floor else None))
    rows.append(Row("files.throughput", files.METRIC, "files.throughput"))
    for key, label, unit, higher, scale in local.BENCHMARKS:
        for style in ("async", "gen"):
            metric = Metric(f"{key}.{style}", f"local {label} [{style}]", unit, higher, scale)
            rows.append(
                Row(f"local.{key}.{style}", metric, None, f"local.{key}.{local.BASELINE_STYLE}")
            )
    for m in memory.METRICS:
        key = f"memory.{m.key}"
        rows.append(Row(key, m, key if m.key in MEMORY_FLOORS else None))
    for m in memory.RAW_METRICS:  # bare trio only: what a mailbox, a scope would cost
        rows.append(Row(f"memory.{m.key}", m, f"memory.{m.key}"))
    return rows


ROWS = _rows()


@dataclass
class Settings:
    rounds: int
    quick: bool
    groups: tuple[str, ...]
    file_mib: int
    dest_root: str | None


class Collector:
    """Values per system and key, one per round; failures counted per system/group."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SYSTEMS}
        self.failures: list[str] = []

    def add(self, system: str, group: str, data: dict[str, float]) -> None:
        for key, value in data.items():
            self.values[system][f"{group}.{key}"].append(value)

    def run(self, label: str, system: str, group: str, fn: Callable[[], dict[str, float]]) -> None:
        try:
            data = fn()
        except (WorkerError, subprocess.SubprocessError, OSError) as exc:
            self.failures.append(f"{label}, {group}, {system}: {exc}")
            print(f"{label}, {group}, {system}: FAILED: {exc}", file=sys.stderr)
            return
        self.add(system, group, data)

    def median(self, system: str, key: str) -> float:
        finite = [v for v in self.values[system].get(key, []) if math.isfinite(v)]
        return median(finite) if finite else math.nan


def _rotate(systems: Sequence[str], rnd: int) -> list[str]:
    shift = rnd % len(systems)
    return [*systems[shift:], *systems[:shift]]


def run_rounds(settings: Settings, collector: Collector, workdir: str) -> None:
    deadline = 30.0 if settings.quick else 90.0
    payload = digest = ""
    if "files" in settings.groups or "latency" in settings.groups:
        payload, digest = files.make_payload(workdir, settings.file_mib)
    tls = make_tls_files(tempfile.mkdtemp(prefix="certs-", dir=workdir))
    dest_root = tempfile.mkdtemp(prefix="bench-run-dest-", dir=settings.dest_root)
    local_sizes = (
        local.Sizes(20_000, 2_000, 2_000, 1_000)
        if settings.quick
        else local.Sizes(200_000, 20_000, 20_000, 1_000)
    )
    idle_tasks, peer_count = (20_000, 4) if settings.quick else (50_000, 12)

    def files_round(system: str) -> dict[str, float]:
        return {"throughput": files.run_round(system, payload, digest, dest_root)}

    plans: dict[str, tuple[Sequence[str], Callable[[str], dict[str, float]]]] = {
        "remote": (
            remote.SYSTEMS,
            partial(
                remote.run_round, quick=settings.quick, window=remote.WINDOW, deadline=deadline
            ),
        ),
        "peers": (
            peers.SYSTEMS,
            partial(peers.run_round, quick=settings.quick, deadline=deadline, tls=tls),
        ),
        "latency": (
            latency.SYSTEMS,
            partial(
                latency.run_round,
                quick=settings.quick,
                deadline=deadline,
                payload=payload,
                dest_root=dest_root,
            ),
        ),
        "files": (files.SYSTEMS, files_round),
        "local": (("triopycos", "pycos"), partial(local.run_round, sizes=local_sizes)),
        "memory": (
            memory.IDLE_SYSTEMS,
            partial(memory.run_round, tasks=idle_tasks, peers=peer_count),
        ),
    }
    started = clock()
    try:
        for rnd in range(settings.rounds):
            label = f"round {rnd + 1}"
            for group in settings.groups:
                systems, measure = plans[group]
                for system in _rotate(systems, rnd):
                    collector.run(label, system, group, partial(measure, system))
            print(f"{label}/{settings.rounds} done ({clock() - started:.0f} s)", file=sys.stderr)
    finally:
        shutil.rmtree(dest_root, ignore_errors=True)


# -- the report -------------------------------------------------------------------------


def _floor_factor(metric: Metric, ours: float, floor: float) -> float:
    """How many times the floor's cost ours is (1.0 = at the floor)."""
    r = ratio(metric, ours, floor)
    return 1 / r if math.isfinite(r) and r > 0 else math.nan


def table(collector: Collector, groups: Sequence[str]) -> str:
    headers = ["benchmark", "triopycos", "pycos", "raw trio", "vs pycos", "x floor"]
    lines: list[list[str]] = []
    for row in ROWS:
        if row.key.split(".", 1)[0] not in groups:
            continue
        m = row.metric
        ours = collector.median("triopycos", row.key)
        theirs = collector.median("pycos", row.pycos or row.key)
        floor = collector.median("raw", row.floor) if row.floor else math.nan
        r = ratio(m, ours, theirs)
        f = _floor_factor(m, ours, floor)
        lines.append(
            [
                f"{m.label} ({m.unit})",
                format_value(ours * m.scale),
                format_value(theirs * m.scale),
                format_value(floor * m.scale),
                "n/a" if math.isnan(r) else f"{r:.2f}x",
                "n/a" if math.isnan(f) else f"{f:.2f}",
            ]
        )
    return format_table(headers, lines)


def targets(collector: Collector) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met?) for every target of issue 9 (None: not measured)."""
    c = collector
    out: list[tuple[str, str, bool | None]] = []

    def add(label: str, value: float, shown: str, ok: bool) -> None:
        out.append(
            (label, shown if math.isfinite(value) else "n/a", ok if math.isfinite(value) else None)
        )

    small = c.median("triopycos", "remote.send_small")
    small_x = small / c.median("pycos", "remote.send_small")
    add("remote send >= 100k msg/s", small, f"{format_value(small)} msg/s", small >= 100_000)
    add("remote send >= 30x pycos", small_x, f"{small_x:.1f}x", small_x >= 30)
    deliver = c.median("triopycos", "remote.deliver")
    dx = deliver / c.median("pycos", "remote.deliver")
    fx = deliver / c.median("raw", "remote.deliver")
    add("deliver round trip <= 0.3x pycos's", dx, f"{deliver * 1e6:.0f} µs = {dx:.2f}x", dx <= 0.3)
    add("deliver round trip <= 2.5x the raw echo", fx, f"{fx:.2f}x", fx <= 2.5)
    rps = c.median("triopycos", "remote.rps")
    add("RPS call to result <= 400 µs", rps, f"{rps * 1e6:.0f} µs", rps <= 400e-6)
    lost = sum(c.values["triopycos"].get("remote.rps.failed", [math.nan]))
    add("RPS: no lost results", lost, f"{lost:.0f} calls without their result", lost == 0)
    fs = c.median("triopycos", "files.throughput")
    fsx = fs / c.median("pycos", "files.throughput")
    add("send_file >= pycos", fsx, f"{fs / 1e6:.0f} MB/s = {fsx:.2f}x", fsx >= 1)
    burst = c.median("triopycos", "local.send_recv_burst.async")
    bx = burst / c.median("pycos", "local.send_recv_burst.gen")
    add("local send/receive >= pycos (burst)", bx, f"{bx:.2f}x", bx >= 1)
    yielding = c.median("triopycos", "local.send_recv_yielding.async")
    yx = yielding / c.median("pycos", "local.send_recv_yielding.gen")
    add("local send/receive >= pycos (yielding)", yx, f"{yx:.2f}x", yx >= 1)
    idle = c.median("triopycos", "memory.idle_task")
    ix = idle / c.median("pycos", "memory.idle_task")
    add("idle task memory <= pycos's", ix, f"{idle:,.0f} B/task = {ix:.2f}x pycos's", ix <= 1)
    # Issue 21 (item 3): closer to the floor.
    add("issue 21: remote send >= 600k msg/s", small, f"{format_value(small)} msg/s", small >= 6e5)
    add("issue 21: deliver <= 1.3x the raw echo", fx, f"{fx:.2f}x", fx <= 1.3)
    return out


def reported(collector: Collector) -> list[str]:
    """Issue 21's ratios that have no threshold: against Pyro5, TLS, memory against
    bare trio, latency under load."""
    c = collector
    out: list[str] = []

    def r(system: str, key: str) -> float:
        return c.median("triopycos", key) / c.median(system, key)

    for mode, label in (("plain", ""), ("tls", "TLS ")):
        one, trip = f"peers.{mode}.oneway", f"peers.{mode}.roundtrip"
        if math.isfinite(c.median("triopycos", one)):
            out.append(
                f"  {label}one-way vs Pyro5's @oneway: {r('pyro5', one):.1f}x the rate; "
                f"{label}round trip vs a Pyro5 call: {r('pyro5', trip):.2f}x the time, "
                f"{r('raw', trip):.2f}x the raw {label}echo's"
            )
    idle, susp = c.median("raw", "memory.idle_task"), c.median("raw", "memory.suspended_task")
    if math.isfinite(idle):
        out.append(
            f"  memory: parked receive {c.median('triopycos', 'memory.idle_task'):,.0f} B = "
            f"{r('raw', 'memory.idle_task'):.2f}x bare trio's {idle:,.0f} B; idle (suspend) "
            f"{c.median('triopycos', 'memory.suspended_task'):,.0f} B = "
            f"{r('raw', 'memory.suspended_task'):.2f}x trio's sleep_forever {susp:,.0f} B"
        )
    base = c.median("triopycos", "latency.idle.p50")
    if math.isfinite(base):
        parts = [
            f"{case} p50/p99/p99.9 "
            + "/".join(f"{c.median('triopycos', f'latency.{case}.{q}') * 1e6:,.0f}"
                       for q in ("p50", "p99", "p999"))
            + " µs"
            for case in latency.CASES
        ]  # fmt: skip
        out.append("  deliver latency: " + "; ".join(parts))
    return out


def report(settings: Settings, collector: Collector, load_before: str, elapsed: float) -> str:
    header = (
        f"bench/run.py: median of {settings.rounds} round(s)"
        f"{' (--quick sizes)' if settings.quick else ''}; groups: {', '.join(settings.groups)}\n"
        f"python {platform.python_version()}, trio {version('trio')}, cbor2 {version('cbor2')}, "
        f"pycos {version('pycos')}, Pyro5 {version('Pyro5')}; {os.cpu_count()} CPUs; "
        f"load average {load_before} before, "
        f"{load_average()} after; {elapsed:.0f} s\n"
        "vs pycos: > 1 means triopycos is better (rates and times alike); x floor: "
        "triopycos's cost over the raw trio floor's (1.00 = at the floor)\n"
    )
    lines = [header, table(collector, settings.groups)]

    def value(system: str, key: str) -> float:
        return collector.median(system, key)

    if "peers" in settings.groups:
        lines += ["", "Against the peers, plain and with TLS (bench/peers.py):", ""]
        lines += [peers.table(lambda s, k: value(s, f"peers.{k}"), peers.SYSTEMS)]
        lines += ["", peers.tls_costs(lambda s, k: value(s, f"peers.{k}"), peers.SYSTEMS)]
    if "latency" in settings.groups:
        lines += ["", "Latency under load (bench/latency.py), median of each round's:", ""]
        lines += [latency.table(lambda s, k: value(s, f"latency.{k}"), latency.SYSTEMS)]
        lines += ["", latency.load_note(lambda s, k: value(s, f"latency.{k}"))]
    lines += ["", "Targets:"]
    for label, shown, ok in targets(collector):
        status = "n/a" if ok is None else ("met" if ok else "NOT met")
        lines.append(f"  {label}: {shown}: {status}")
    lines += ["", "Issue 21, reported ratios:", *reported(collector)]
    failed = [
        f"  {system} {key}: {sum(v):,.0f}"
        for system, keys in collector.values.items()
        for key, v in sorted(keys.items())
        if key.endswith(".failed") and sum(v) > 0 and not system.startswith("pycos")
    ]
    if failed:
        lines += ["", "Failed messages/calls (triopycos, Pyro5, raw):", *failed]
    if collector.failures:
        lines += ["", "Failed runs:", *(f"  {f.splitlines()[0]}" for f in collector.failures)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run only these groups")
    parser.add_argument("--file-mib", type=int, default=None, help="send_file size (256, quick 32)")
    parser.add_argument(
        "--dest-root",
        help="folder for the received files (default: the temporary folder)",
    )
    parser.add_argument("--json", help="also write every value of every round to this file")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.file_mib is None:
        args.file_mib = 32 if args.quick else 256
    if args.rounds < 1 or args.file_mib < 1:
        parser.error("--rounds and --file-mib must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        rounds=args.rounds,
        quick=args.quick,
        groups=tuple(args.only or GROUPS),
        file_mib=args.file_mib,
        dest_root=args.dest_root,
    )
    collector = Collector()
    load_before = load_average()
    started = clock()
    workdir = tempfile.mkdtemp(prefix="bench-run-")
    try:
        run_rounds(settings, collector, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(settings, collector, load_before, clock() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({s: dict(v) for s, v in collector.values.items()}, f, indent=1)
    return 1 if collector.failures else 0


if __name__ == "__main__":
    sys.exit(main())
