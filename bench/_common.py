"""Helpers shared by the benchmarks: metrics, timing, worker subprocesses, tables.

A benchmark script usually has two halves:

* a *worker* half (``--system NAME --json``) that runs one system's measurements in
  its own process and prints one JSON object ``{metric key: value}`` as the last line
  of its standard output (``emit_json``);
* a *driver* half that starts those workers round after round (``run_worker``),
  collects the values and prints a table of medians with a ratio column
  (``comparison_table``).

Keeping every system in its own process means no scheduler thread, event loop or
garbage from one system runs while another one is being measured.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "Metric",
    "Stopwatch",
    "WorkerError",
    "clock",
    "comparison_table",
    "emit_json",
    "format_table",
    "format_value",
    "median",
    "quiet_gc",
    "ratio",
    "run_worker",
]

#: The repository root: workers get it on ``PYTHONPATH`` so ``triopycos`` and ``bench``
#: import without the package being installed.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The clock every measurement uses (monotonic, highest resolution available).
clock: Callable[[], float] = time.perf_counter


@dataclass(frozen=True)
class Metric:
    """One measured quantity.

    ``key`` is what workers use in their JSON, ``label`` what the table shows, and
    ``scale`` turns the raw value (always in base units: messages per second, or
    seconds per operation) into the unit shown (e.g. ``1e6`` for seconds -> µs).
    """

    key: str
    label: str
    unit: str
    higher_is_better: bool
    scale: float = 1.0


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.elapsed`` (seconds)."""

    __slots__ = ("elapsed", "start")

    def __init__(self) -> None:
        self.start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = clock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = clock() - self.start


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect garbage first so an earlier run's leftovers are not paid for here.

    The collector stays enabled during the measurement: allocation-heavy code paying
    for its own collections is part of its cost.
    """
    gc.collect()
    yield


def median(values: Sequence[float]) -> float:
    """Median of ``values`` (NaN when there are none)."""
    return statistics.median(values) if values else math.nan


def ratio(metric: Metric, ours: float, theirs: float) -> float:
    """How many times better ``ours`` is than ``theirs``: > 1 means ours is better,
    whichever direction the metric improves in."""
    if not (math.isfinite(ours) and math.isfinite(theirs)) or ours <= 0 or theirs <= 0:
        return math.nan
    return ours / theirs if metric.higher_is_better else theirs / ours


def format_value(value: float) -> str:
    """A number with about four significant digits, thousands separated."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def comparison_table(
    rows: Sequence[tuple[Metric, Sequence[float], Sequence[float]]],
    ours_name: str,
    theirs_name: str,
    *,
    spread: bool = False,
) -> str:
    """Table of medians: benchmark, ours, theirs, ratio (> 1: ours is better).

    Each row is ``(metric, our values, their values)`` in raw units (one value per
    round).  With ``spread`` the min..max range of each side is shown too.
    """
    headers = ["benchmark", ours_name, theirs_name, f"ratio (>1: {ours_name} better)"]
    if spread:
        headers[3:3] = [f"{ours_name} range", f"{theirs_name} range"]
    table: list[list[str]] = []
    for metric, ours, theirs in rows:
        ours_m = median(ours) * metric.scale
        theirs_m = median(theirs) * metric.scale
        r = ratio(metric, ours_m, theirs_m)
        row = [
            f"{metric.label} ({metric.unit})",
            format_value(ours_m),
            format_value(theirs_m),
            "n/a" if math.isnan(r) else f"{r:.2f}x",
        ]
        if spread:
            row[3:3] = [_range(ours, metric.scale), _range(theirs, metric.scale)]
        table.append(row)
    return format_table(headers, table)


def _range(values: Sequence[float], scale: float) -> str:
    if not values:
        return "n/a"
    return f"{format_value(min(values) * scale)}..{format_value(max(values) * scale)}"


def emit_json(results: Mapping[str, float]) -> None:
    """Worker side: print the results as the last line of standard output."""
    sys.stdout.flush()
    print(json.dumps(dict(results)), flush=True)


class WorkerError(RuntimeError):
    """A worker subprocess failed or printed no result."""


def run_worker(argv: Sequence[str], *, timeout: float = 600.0) -> dict[str, float]:
    """Driver side: run ``python argv...`` and return the JSON of its last stdout line.

    The worker's standard error passes through, so its warnings stay visible.
    """
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONHASHSEED", "0")
    proc = subprocess.run(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(lines[-20:])
        raise WorkerError(f"worker {' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise WorkerError(f"worker {' '.join(argv)} printed no JSON: {lines[-1]!r}") from exc
    if not isinstance(data, dict):
        raise WorkerError(f"worker {' '.join(argv)} printed {type(data).__name__}, not a dict")
    return {str(k): float(v) for k, v in data.items()}
