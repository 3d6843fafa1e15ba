"""Helpers shared by the benchmarks: metrics, timing, worker processes, tables.

A benchmark script usually has two halves:

* a *worker* half (``--system NAME --json``) that runs one system's measurements in
  its own process and prints one JSON object ``{metric key: value}`` as the last line
  of its standard output (``emit_json``);
* a *driver* half that starts those workers round after round (``run_worker``), or a
  server process and a client process talking over loopback (``run_with_server``),
  collects the values and prints a table of medians with a ratio column
  (``comparison_table``).

Keeping every system in its own process means no scheduler thread, event loop or
garbage from one system runs while another one is being measured.

Process rules (the same for every script): a server prints ``ready ADDR PORT`` on its
standard output once it listens (``announce_ready``) and exits when the driver closes
its standard input; every worker arms a watchdog (``arm_watchdog``) that ends it after
a hard deadline whatever it is doing; the driver bounds each client with a timeout
and kills the server in a ``finally``.  Only loopback is used.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import select
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "REPO_ROOT",
    "Metric",
    "Stopwatch",
    "TlsFiles",
    "WorkerError",
    "announce_ready",
    "arm_watchdog",
    "clock",
    "comparison_table",
    "emit_json",
    "format_table",
    "format_value",
    "load_average",
    "make_tls_files",
    "median",
    "quiet_gc",
    "ratio",
    "raw_tls_contexts",
    "read_ready",
    "round_args",
    "round_parser",
    "rss_bytes",
    "run_with_server",
    "run_worker",
    "start_server",
    "stop_process",
    "version",
    "worker_env",
]


def round_parser(
    doc: str | None, systems: Sequence[str], deadline: float
) -> argparse.ArgumentParser:
    """The options of a benchmark that runs rounds of client/server worker processes:
    ``--rounds``, ``--quick``, ``--systems``, ``--deadline``, and the hidden worker
    options ``--serve``, ``--client``, ``--port``.  Finish with ``round_args``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument(
        "--systems", nargs="+", choices=systems, default=list(systems), help="systems to run"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help=f"hard time limit of each worker process, s (default {deadline:g}, quick 30)",
    )
    parser.add_argument("--serve", choices=systems, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=systems, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.set_defaults(default_deadline=deadline)
    return parser


def round_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with a ``round_parser``, filling the defaults that depend on
    ``--quick``."""
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.deadline is None:
        args.deadline = 30.0 if args.quick else args.default_deadline
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


#: The only address benchmarks use: every node binds it, nothing discovers peers.
HOST = "127.0.0.1"

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
    proc = subprocess.run(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
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


# -- worker processes -------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    """The environment of a worker: this checkout first on ``PYTHONPATH`` (so the
    ``triopycos`` measured is the one next to the script) and a fixed hash seed."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def announce_ready(addr: str, port: int) -> None:
    """Server side: tell the driver where we listen, then keep stdout for that only
    (anything printed later goes to stderr)."""
    print(f"ready {addr} {port}", flush=True)
    os.dup2(2, 1)


def arm_watchdog(seconds: float, *, exit_on_stdin_eof: bool = False) -> None:
    """End this process after ``seconds`` whatever it is doing and (servers) as soon
    as the driver closes our standard input or dies."""
    timer = threading.Timer(seconds, _hard_exit, args=(f"deadline of {seconds:.0f} s passed", 3))
    timer.daemon = True
    timer.start()
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            # os.read on the descriptor: no lock of sys.stdin's buffer is held, so
            # interpreter shutdown never waits for this thread.
            while os.read(0, 4096):
                pass
            _hard_exit("", 0)

        threading.Thread(target=watch_stdin, daemon=True).start()


def _hard_exit(why: str, code: int) -> None:
    if why:
        print(f"{Path(sys.argv[0]).name} worker {os.getpid()}: {why}, exiting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(code)


def start_server(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``python argv...`` as a server: its stdin is ours to close (it then
    exits), its stdout carries the ready line."""
    return subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=worker_env(),
    )


def read_ready(proc: subprocess.Popen[bytes], timeout: float) -> tuple[str, int]:
    """The server's ``ready ADDR PORT`` line, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    end = time.monotonic() + timeout
    while b"\n" not in data:
        left = end - time.monotonic()
        if left <= 0:
            raise WorkerError(f"server did not get ready within {timeout:.0f} s")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise WorkerError(f"server exited before it was ready ({proc.poll()})")
            data += chunk
    words = data.split(b"\n", 1)[0].decode().split()
    if len(words) != 3 or words[0] != "ready":
        raise WorkerError(f"unexpected line from the server: {data!r}")
    return words[1], int(words[2])


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Let a server exit (it does on stdin EOF), and kill it if it does not within a
    few seconds."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def run_with_server(
    server_argv: Sequence[str],
    client_argv: Callable[[int], Sequence[str]],
    *,
    timeout: float,
    ready_timeout: float = 30.0,
) -> dict[str, float]:
    """One server process and one client process on loopback: start the server, run
    ``client_argv(port)`` as a worker (its JSON is the result), stop the server."""
    server = start_server(server_argv)
    try:
        _, port = read_ready(server, timeout=ready_timeout)
        return run_worker(client_argv(port), timeout=timeout)
    finally:
        stop_process(server)


# -- TLS certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """The certificate files of a TLS benchmark, all in one folder (made by
    ``make_tls_files``; workers get the folder on their command line).

    One CA and one leaf certificate for 127.0.0.1 that every process presents: the
    benchmarks measure the cost of TLS on a connection, not who is who.
    """

    folder: str

    @property
    def ca(self) -> str:
        """The CA's certificate (what each side trusts)."""
        return os.path.join(self.folder, "ca.pem")

    @property
    def cert(self) -> str:
        """The leaf certificate and its chain."""
        return os.path.join(self.folder, "cert.pem")

    @property
    def key(self) -> str:
        """The leaf certificate's private key."""
        return os.path.join(self.folder, "key.pem")

    @property
    def cert_and_ca(self) -> str:
        """The leaf's chain followed by the CA's certificate: pycos 4.12.2 trusts the
        certificates of its own ``certfile`` (its client passes it as ``ca_certs``),
        so its ``certfile`` must hold the CA too."""
        return os.path.join(self.folder, "cert-and-ca.pem")


def make_tls_files(folder: str) -> TlsFiles:
    """A fresh CA (trustme) and a certificate for 127.0.0.1 issued by it, written in
    ``folder``."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    files = TlsFiles(folder)
    ca.cert_pem.write_to_path(files.ca)
    leaf.private_key_pem.write_to_path(files.key)
    chain = b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
    Path(files.cert).write_bytes(chain)
    Path(files.cert_and_ca).write_bytes(chain + ca.cert_pem.bytes())
    return files


def raw_tls_contexts(files: TlsFiles) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts of the raw TLS floor: like triopycos's, each side
    presents the certificate and requires the other's to chain to the CA; host names
    are not checked."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(files.cert, files.key)
        context.load_verify_locations(files.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = False
    return server, client


# -- the machine ------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def load_average() -> str:
    """The 1-minute load average as text (other processes competing for the CPUs
    inflate round-trip times: every table says how loaded the machine was)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"
