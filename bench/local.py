"""Local (single-node) benchmarks: triopycos against pycos 4.12.2, in the same run.

Run: ``python bench/local.py [--rounds N] [--messages M] [--spread]``

Every round starts one worker process per system (``--system NAME --json``, the
order alternating between rounds so drift hits both alike); the table shows the
median over the rounds.  Measurements are taken inside the tasks themselves, with
``time.perf_counter``, so scheduler start-up and shutdown are not counted:

* send/receive: a producer task sends M small ints to a consumer task, which
  receives them all; from just before the first send to just after the last
  receive.  "burst": the producer sends everything without yielding; "yielding":
  the producer yields to the scheduler after every send (a context switch per
  message).
* ping-pong: task A sends a number to B, B sends it back, repeated; per round trip.
* spawn: a task starts K tasks that return at once, then waits for every one of
  them to finish; per task.  The tasks are started in waves (``--wave``, default
  1000: start a wave, wait for all of it, next wave), because pycos's cost per task
  grows with the number of tasks scheduled at once: its scheduler iterates over a
  set whose table never shrinks (about 7 µs/task in waves of 100, 14 in waves of
  1000, 130 with 20000 at once on the machine this was written on).

Worth knowing when reading "burst": in triopycos, ``receive()`` with a message
already in the mailbox returns without letting the scheduler run anything else,
while every pycos ``receive`` is a scheduling pass; "yielding" and ping-pong show
the cost of a real task switch in each.

The pycos column always runs pycos-style generator tasks.  triopycos runs each
benchmark twice: "[gen]" uses the very same generator functions as pycos (only the
``Task`` class differs), "[async]" uses ``async def`` tasks.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Metric,
    WorkerError,
    clock,
    comparison_table,
    emit_json,
    format_value,
    quiet_gc,
    run_worker,
    version,
)

if TYPE_CHECKING:
    from triopycos import Task as TrioTask

SYSTEMS = ("triopycos", "pycos")
BASELINE_STYLE = "gen"

# Metric keys in worker JSON are "<benchmark>.<style>", style "gen" or "async".
BENCHMARKS: tuple[tuple[str, str, str, bool, float], ...] = (
    # key, label, unit, higher is better, display scale
    ("send_recv_burst", "send/receive, burst", "msg/s", True, 1.0),
    ("send_recv_yielding", "send/receive, yielding", "msg/s", True, 1.0),
    ("ping_pong", "ping-pong round trip", "µs", False, 1e6),
    ("spawn", "spawn + finish", "µs/task", False, 1e6),
)

TaskFactory = Callable[..., Any]


# -- task bodies shared by both systems (pycos generator syntax) --------------------
#
# A parameter named `task` receives the running task in both systems; `yield x`
# waits for x (a pycos sub-generator or a triopycos awaitable); a bare `yield` is a
# scheduling point.  `send` is synchronous in both.


def gen_consumer(n: int, task: Any = None) -> Generator[Any, Any, float]:
    """Receives ``n`` messages; returns the time just after the last one."""
    for _ in range(n):
        yield task.receive()
    return clock()


def gen_burst_producer(task_cls: TaskFactory, n: int) -> Generator[Any, Any, float]:
    """Sends ``n`` messages without yielding; returns first send -> last receive."""
    consumer = task_cls(gen_consumer, n)
    start = clock()
    for i in range(n):
        consumer.send(i)
    end: float = yield consumer.finish()
    return end - start


def gen_yielding_producer(task_cls: TaskFactory, n: int) -> Generator[Any, Any, float]:
    """Sends ``n`` messages, yielding after each; returns first send -> last receive."""
    consumer = task_cls(gen_consumer, n)
    start = clock()
    for i in range(n):
        consumer.send(i)
        yield
    end: float = yield consumer.finish()
    return end - start


def gen_ponger(peer: Any, task: Any = None) -> Generator[Any, Any, int]:
    """Echoes every message back to ``peer`` until it receives None."""
    while True:
        msg = yield task.receive()
        if msg is None:
            return 0
        peer.send(msg)


def gen_pinger(task_cls: TaskFactory, n: int, task: Any = None) -> Generator[Any, Any, float]:
    """``n`` round trips with a ponger; returns the total time they took."""
    ponger = task_cls(gen_ponger, task)
    start = clock()
    for i in range(n):
        ponger.send(i)
        yield task.receive()
    elapsed = clock() - start
    ponger.send(None)
    yield ponger.finish()
    return elapsed


def gen_trivial() -> Generator[Any, Any, int]:
    """Returns at once (the bare ``yield`` only makes this a generator function)."""
    return 0
    yield


def gen_spawner(task_cls: TaskFactory, k: int, wave: int) -> Generator[Any, Any, float]:
    """Starts ``k`` trivial tasks, ``wave`` at a time, waiting for each wave to
    finish before the next; returns the total time."""
    start = clock()
    while k > 0:
        tasks = [task_cls(gen_trivial) for _ in range(min(k, wave))]
        for t in tasks:
            yield t.finish()
        k -= len(tasks)
    return clock() - start


# -- triopycos async task bodies ----------------------------------------------------


async def async_consumer(n: int, task: TrioTask) -> float:
    for _ in range(n):
        await task.receive()
    return clock()


async def async_burst_producer(task_cls: TaskFactory, n: int) -> float:
    consumer = task_cls(async_consumer, n)
    start = clock()
    for i in range(n):
        consumer.send(i)
    end: float = await consumer.finish()
    return end - start


async def async_yielding_producer(task_cls: TaskFactory, n: int) -> float:
    from trio.lowlevel import checkpoint

    consumer = task_cls(async_consumer, n)
    start = clock()
    for i in range(n):
        consumer.send(i)
        await checkpoint()
    end: float = await consumer.finish()
    return end - start


async def async_ponger(peer: TrioTask, task: TrioTask) -> int:
    while (msg := await task.receive()) is not None:
        peer.send(msg)
    return 0


async def async_pinger(task_cls: TaskFactory, n: int, task: TrioTask) -> float:
    ponger = task_cls(async_ponger, task)
    start = clock()
    for i in range(n):
        ponger.send(i)
        await task.receive()
    elapsed = clock() - start
    ponger.send(None)
    await ponger.finish()
    return elapsed


async def async_trivial() -> int:
    return 0


async def async_spawner(task_cls: TaskFactory, k: int, wave: int) -> float:
    start = clock()
    while k > 0:
        tasks = [task_cls(async_trivial) for _ in range(min(k, wave))]
        for t in tasks:
            await t.finish()
        k -= len(tasks)
    return clock() - start


# -- what to run --------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How many messages / round trips / tasks (spawned ``wave`` at a time) to use."""

    messages: int
    round_trips: int
    tasks: int
    wave: int

    def scaled(self, divisor: int) -> Sizes:
        """Smaller sizes for a warm-up pass (the wave size stays)."""
        return Sizes(
            max(1, self.messages // divisor),
            max(1, self.round_trips // divisor),
            max(1, self.tasks // divisor),
            self.wave,
        )


Run = tuple[str, Callable[..., Any], tuple[Any, ...], Callable[[float], float]]


def plan(style: str, task_cls: TaskFactory, sizes: Sizes, warmup: bool) -> list[tuple[Run, ...]]:
    """Per benchmark: its warm-up run (if ``warmup``) and its measured run.

    A run is (metric key, task body, its arguments, raw result -> metric value).
    Spawn comes last: in pycos, a burst of tasks leaves the scheduler's set of
    scheduled tasks with a large table that every later scheduling pass iterates
    over, which would slow whatever ran after it in the same process.
    """
    measured = _runs(style, task_cls, sizes)
    if not warmup:
        return [(run,) for run in measured]
    return list(zip(_runs(style, task_cls, sizes.scaled(20)), measured, strict=True))


def _runs(style: str, task_cls: TaskFactory, sizes: Sizes) -> list[Run]:
    gen = style == "gen"
    m, r, k = sizes.messages, sizes.round_trips, sizes.tasks
    return [
        (
            f"send_recv_burst.{style}",
            gen_burst_producer if gen else async_burst_producer,
            (task_cls, m),
            lambda s: m / s,
        ),
        (
            f"send_recv_yielding.{style}",
            gen_yielding_producer if gen else async_yielding_producer,
            (task_cls, m),
            lambda s: m / s,
        ),
        (f"ping_pong.{style}", gen_pinger if gen else async_pinger, (task_cls, r), lambda s: s / r),
        (
            f"spawn.{style}",
            gen_spawner if gen else async_spawner,
            (task_cls, k, sizes.wave),
            lambda s: s / k,
        ),
    ]


def _as_seconds(value: object, what: str) -> float:
    if not isinstance(value, float):
        raise RuntimeError(f"benchmark task {what} returned {value!r}, not a duration")
    return value


# -- workers (one system per process) -----------------------------------------------


def pycos_worker(sizes: Sizes, warmup: bool) -> dict[str, float]:
    import pycos

    pycos.logger.setLevel(pycos.Logger.CRITICAL)
    pycos.logger.stream = sys.stderr  # keep stdout for the JSON result
    scheduler = pycos.Pycos.instance()
    results: dict[str, float] = {}
    try:
        for runs in plan("gen", pycos.Task, sizes, warmup):
            for key, body, args, convert in runs:  # the last one is the measured one
                with quiet_gc():
                    # value() blocks this (main) thread until the task, run by the
                    # scheduler thread, has returned: nothing else runs meanwhile.
                    results[key] = convert(_as_seconds(pycos.Task(body, *args).value(), key))
    finally:
        scheduler.finish()
    return results


def triopycos_worker(sizes: Sizes, warmup: bool) -> dict[str, float]:
    import trio

    from triopycos import Task, open_pycos

    async def main() -> dict[str, float]:
        results: dict[str, float] = {}
        async with open_pycos(name="bench-local", node="127.0.0.1", discover_peers=False) as node:
            for style in ("gen", "async"):
                for runs in plan(style, Task, sizes, warmup):
                    for key, body, args, convert in runs:  # the last one is measured
                        with quiet_gc():
                            value = await node.spawn(body, *args).finish()
                            results[key] = convert(_as_seconds(value, key))
        return results

    return trio.run(main)


WORKERS: dict[str, Callable[[Sizes, bool], dict[str, float]]] = {
    "pycos": pycos_worker,
    "triopycos": triopycos_worker,
}


# -- driver -------------------------------------------------------------------------


def table_rows(
    collected: dict[str, dict[str, list[float]]],
) -> list[tuple[Metric, list[float], list[float]]]:
    rows: list[tuple[Metric, list[float], list[float]]] = []
    for key, label, unit, higher, scale in BENCHMARKS:
        for style in ("gen", "async"):
            metric = Metric(f"{key}.{style}", f"{label} [{style}]", unit, higher, scale)
            rows.append(
                (
                    metric,
                    collected["triopycos"][f"{key}.{style}"],
                    collected["pycos"][f"{key}.{BASELINE_STYLE}"],
                )
            )
    return rows


def run_round(system: str, sizes: Sizes, *, warmup: bool = True) -> dict[str, float]:
    """One worker process of ``system`` (also what ``bench/run.py`` calls): its
    results, keyed ``"<benchmark>.<style>"``."""
    argv = [
        str(Path(__file__).resolve()),
        "--json",
        "--messages",
        str(sizes.messages),
        "--round-trips",
        str(sizes.round_trips),
        "--tasks",
        str(sizes.tasks),
        "--wave",
        str(sizes.wave),
        "--system",
        system,
        *([] if warmup else ["--no-warmup"]),
    ]
    return run_worker(argv)


def drive(args: argparse.Namespace) -> int:
    started = clock()
    collected: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SYSTEMS}
    sizes = Sizes(args.messages, args.round_trips, args.tasks, args.wave)
    failed: dict[str, str] = {}
    for rnd in range(args.rounds):
        order = SYSTEMS if rnd % 2 == 0 else SYSTEMS[::-1]
        for system in order:
            if system in failed:
                continue
            try:
                data = run_round(system, sizes, warmup=not args.no_warmup)
            except (WorkerError, OSError, subprocess.SubprocessError) as exc:
                # Keep going: the other system's numbers are still worth a table.
                failed[system] = str(exc)
                print(f"{system} worker failed, skipping it from now on: {exc}", file=sys.stderr)
                continue
            for key, value in data.items():
                collected[system][key].append(value)
        print(f"round {rnd + 1}/{args.rounds} done ({clock() - started:.1f} s)", file=sys.stderr)

    print(
        f"Local benchmarks: median of {args.rounds} rounds, one process per system and round\n"
        f"python {platform.python_version()}, trio {version('trio')}, "
        f"pycos {version('pycos')}; messages={args.messages:,}, "
        f"round trips={args.round_trips:,}, tasks={args.tasks:,} in waves of {args.wave:,}\n"
        "pycos always runs generator tasks; triopycos [gen] runs the same generator "
        "functions, [async] async def tasks.\n"
        "ratio = how many times better triopycos is than pycos (> 1: triopycos better, "
        "for msg/s and µs alike)\n"
    )
    print(comparison_table(table_rows(collected), "triopycos", "pycos", spread=args.spread))
    print(f"\ntotal time {clock() - started:.1f} s")
    for system in failed:
        print(f"{system}: worker FAILED (its column shows n/a); see the error above")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Local task benchmarks: triopycos vs pycos 4.12.2, side by side."
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--messages", type=int, default=200_000, help="messages per send/receive run"
    )
    parser.add_argument(
        "--round-trips", type=int, default=None, help="ping-pong round trips (messages / 10)"
    )
    parser.add_argument(
        "--tasks", type=int, default=None, help="tasks spawned per spawn run (messages / 10)"
    )
    parser.add_argument(
        "--wave", type=int, default=1000, help="tasks spawned at once before waiting (1000)"
    )
    parser.add_argument("--spread", action="store_true", help="also show min..max per side")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up pass")
    parser.add_argument(
        "--system", choices=sorted(WORKERS), help="run one system's worker in this process"
    )
    parser.add_argument(
        "--json", action="store_true", help="worker: print results as one JSON line"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "messages", "wave"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("round_trips", "tasks"):
        value = getattr(args, name)
        if value is None:
            setattr(args, name, max(1, args.messages // 10))
        elif value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.system is None:
        return drive(args)
    sizes = Sizes(args.messages, args.round_trips, args.tasks, args.wave)
    results = WORKERS[args.system](sizes, not args.no_warmup)
    if args.json:
        emit_json(results)
    else:
        units = {key: (unit, scale) for key, _, unit, _, scale in BENCHMARKS}
        for key, value in results.items():
            unit, scale = units[key.partition(".")[0]]
            print(f"{key:28} {format_value(value * scale):>12} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
