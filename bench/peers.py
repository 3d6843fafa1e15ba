"""Against the peers users would pick, plain and with TLS: triopycos, pycos 4.12.2,
Pyro5 and the raw trio floor side by side.

Run: ``python bench/peers.py [--rounds N] [--quick] [--systems S ...]``

Every round, for each system (the order rotates between rounds) and each mode
(plain TCP, then TLS), the driver starts a fresh server process and a fresh client
process on 127.0.0.1.  The client measures, in one connection, with
``time.perf_counter``:

* one-way: small messages (the int ``i``) that need no answer, as fast as the
  sender can hand them over; rate = messages the server counted / (first send ->
  the server's count back at the client).
* round trip: a call that waits for the server's answer, again and again; time per
  call.

What each system does for them:

* ``triopycos``: one-way ``rtask.send(i)`` and round trip ``await rtask.deliver(i)``
  to a task on the server node (the same loops as ``bench/remote.py``: a yield every
  1000 sends and a flow-control marker every 4000).  TLS: ``open_pycos(certfile=,
  keyfile=, cafile=)``, every connection authenticating both sides.
* ``pycos``: the same generator loops as ``bench/remote.py`` on netpycos
  schedulers, peered with pycos's default ``stream_send=False``.  TLS: pycos's
  ``certfile``/``keyfile`` (its client verifies the server against the certificates
  of its own ``certfile``; it presents none).  With ``stream_send=False`` pycos
  keeps a connection only while it has requests queued: every round trip opens a new
  connection, so with TLS every round trip pays a TLS handshake (that is what a
  pycos user gets by default).  ``pycos-stream`` is pycos with ``stream_send=True``
  on both sides (one persistent connection, like the others).
* ``pyro5``: a Pyro5 daemon (its default thread-pool server and serpent
  serializer) exposing one object; one-way is a ``@oneway`` method, round trip an
  ordinary method returning 1.  Pyro5 runs every ``@oneway`` call in a new thread
  of the server, so the client asks for the count with a call that waits (bounded)
  until every call it made has run.  TLS: Pyro5's ``SSL`` config with the server
  requiring a client certificate (``SSL_REQUIRECLIENTCERT``), as triopycos does.
* ``raw``: the floor, trio TCP (TLS: ``trio.SSLStream``, both sides verified) with
  4-byte length-prefixed frames and no codec, no tasks: the one-way test writes 1000
  frames per ``send_all``, the round trip sends a frame and waits for its echo.

The certificates come from trustme (one CA, one certificate for 127.0.0.1 that
every process presents), made once per run.  Connecting (and the TLS handshake of a
persistent connection) is outside the timed loops, and every loop first runs once
as a warm-up (1/20 of its size).  Each loop is bounded in count and in time; every
process has a watchdog and only loopback is used (nothing discovers peers).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import remote
from bench._common import (
    HOST,
    Metric,
    TlsFiles,
    WorkerError,
    announce_ready,
    arm_watchdog,
    clock,
    emit_json,
    format_table,
    format_value,
    load_average,
    make_tls_files,
    median,
    quiet_gc,
    ratio,
    raw_tls_contexts,
    round_args,
    round_parser,
    run_with_server,
    version,
)
from bench.remote import OP_TIMEOUT, SERVER_NAME, Outcome, Sizes, one_way_outcome, per_op_outcome

SYSTEMS = ("triopycos", "pycos", "pycos-stream", "pyro5", "raw")
MODES = ("plain", "tls")
COLUMN_NAMES = {
    "triopycos": "triopycos",
    "pycos": "pycos",
    "pycos-stream": "pycos stream_send",
    "pyro5": "Pyro5",
    "raw": "raw trio",
}

METRICS: tuple[Metric, ...] = (
    Metric("oneway", "one-way, small", "msg/s", True),
    Metric("roundtrip", "call round trip", "µs", False, 1e6),
)
MODE_LABELS = {"plain": "", "tls": "TLS "}
#: Pyro5's object id on its daemon.
PYRO_OBJECT = "bench_sink"
#: How long the Pyro5 server waits for its one-way calls' threads to have run.
PYRO_COUNT_WAIT = 30.0

_CAP = 5.0
_QUICK_CAP = 1.0
# Only ``small`` (one-way), ``deliver`` (round trips) and ``cap`` are used.  pycos with
# TLS pays a handshake per round trip (see the module docstring): its loops mostly end
# on the time limit.
DEFAULT_SIZES: dict[str, Sizes] = {
    "triopycos": Sizes(200_000, 0, 4_000, 0, 0, 0, 0, _CAP),
    "pycos": Sizes(8_000, 0, 1_000, 0, 0, 0, 0, _CAP),
    "pycos-stream": Sizes(8_000, 0, 1_000, 0, 0, 0, 0, _CAP),
    "pyro5": Sizes(10_000, 0, 4_000, 0, 0, 0, 0, _CAP),
    "raw": Sizes(400_000, 0, 8_000, 0, 0, 0, 0, _CAP),
}
QUICK_SIZES: dict[str, Sizes] = {
    system: replace(sz, small=sz.small // 10, deliver=sz.deliver // 10, cap=_QUICK_CAP)
    for system, sz in DEFAULT_SIZES.items()
}


def sizes_for(system: str, quick: bool) -> Sizes:
    return (QUICK_SIZES if quick else DEFAULT_SIZES)[system]


# -- triopycos ------------------------------------------------------------------------


def triopycos_client(port: int, sizes: Sizes, tls: TlsFiles | None) -> dict[str, Outcome]:
    import trio

    from triopycos import Location, Task

    results: dict[str, Outcome] = {}
    loc = Location(HOST, port)

    async def client(task: Task) -> None:
        rtask = await Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT)
        if rtask is None:
            raise RuntimeError(f"triopycos: {SERVER_NAME!r} not found at {loc}")
        for sz in (sizes.warmup(), sizes):
            with quiet_gc():
                results["oneway"] = await remote.async_one_way(rtask, sz.small, False, sz, task)
            with quiet_gc():
                results["roundtrip"] = await remote.async_deliver(rtask, sz.deliver, sz.cap)
        await rtask.deliver(("quit",), timeout=OP_TIMEOUT)

    async def main() -> None:
        async with remote.client_node("bench-peers-client", loc, tls) as node:
            await node.spawn(client).finish()

    trio.run(main)
    if len(results) != len(METRICS):
        raise RuntimeError("triopycos client task failed (see the warning above)")
    return results


# -- pycos ----------------------------------------------------------------------------


def gen_client(
    scheduler: Any, port: int, sizes: Sizes, stream: bool, task: Any = None
) -> Generator[Any, Any, dict[str, Outcome]]:
    import pycos
    import pycos.netpycos

    loc = pycos.netpycos.Location(HOST, port)
    if (yield scheduler.peer(loc, stream_send=stream)) != 0:
        raise RuntimeError(f"pycos: peer({loc}) failed")
    rtask = yield pycos.Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT)
    if rtask is None:
        raise RuntimeError(f"pycos: {SERVER_NAME!r} not found at {loc}")
    results: dict[str, Outcome] = {}
    for sz in (sizes.warmup(), sizes):
        with quiet_gc():
            results["oneway"] = yield remote.gen_one_way(rtask, sz.small, False, sz, task=task)
        with quiet_gc():
            results["roundtrip"] = yield remote.gen_deliver(rtask, sz.deliver, sz.cap)
    yield rtask.deliver(("quit",), timeout=OP_TIMEOUT)
    return results


def pycos_client(port: int, sizes: Sizes, tls: TlsFiles | None, stream: bool) -> dict[str, Outcome]:
    import pycos

    scheduler = remote._pycos_scheduler("bench-peers-client", tls)
    try:
        value = pycos.Task(gen_client, scheduler, port, sizes, stream).value()
    finally:
        scheduler.terminate()
    if not isinstance(value, dict):
        why = getattr(value, "value", value)  # a MonitorStatus carries the exception
        raise RuntimeError(f"pycos client task failed: {why!r}")
    return value


# -- Pyro5 ----------------------------------------------------------------------------
#
# Pyro5 is imported with importlib, so this file type-checks where the bench extra is
# not installed (its names are then Any).


def _pyro5(tls: TlsFiles | None, *, server: bool) -> Any:
    """``Pyro5.api``, configured for this process: TLS or not, quiet."""
    api = importlib.import_module("Pyro5.api")
    config = api.config
    config.SSL = tls is not None
    if tls is not None:
        config.SSL_CACERTS = tls.ca
        if server:
            config.SSL_SERVERCERT = tls.cert
            config.SSL_SERVERKEY = tls.key
            config.SSL_REQUIRECLIENTCERT = True
        else:
            config.SSL_CLIENTCERT = tls.cert
            config.SSL_CLIENTKEY = tls.key
    return api


class PyroSink:
    """The Pyro5 server's object: ``put`` (one-way), ``take`` (round trip),
    ``start`` and ``count``.  One-way calls run in threads of their own (Pyro5's
    rule), hence the condition."""

    def __init__(self) -> None:
        self._calls = 0
        self._changed = threading.Condition()

    def start(self) -> int:
        with self._changed:
            self._calls = 0
        return 0

    def put(self, x: int) -> None:
        with self._changed:
            self._calls += 1
            self._changed.notify_all()

    def take(self, x: int) -> int:
        return 1

    def count(self, expected: int) -> int:
        """The one-way calls run so far, once ``expected`` have or after
        PYRO_COUNT_WAIT seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._calls >= expected, timeout=PYRO_COUNT_WAIT)
            return self._calls


def pyro5_serve(tls: TlsFiles | None) -> None:
    api = _pyro5(tls, server=True)
    api.oneway(PyroSink.put)  # marks the function: Pyro5's client does not wait for it
    exposed = api.expose(PyroSink)
    daemon = api.Daemon(host=HOST, port=0)
    daemon.register(exposed(), objectId=PYRO_OBJECT)
    port = int(daemon.sock.getsockname()[1])
    announce_ready(HOST, port)
    daemon.requestLoop()  # until the driver closes our stdin (the watchdog then exits)


def pyro5_one_way(proxy: Any, n: int, cap: float) -> Outcome:
    proxy.start()
    put = proxy.put
    sent = 0
    start = clock()
    stop_at = start + cap
    while sent < n:
        upto = min(n, sent + remote.BATCH)
        for i in range(sent, upto):
            put(i)
        sent = upto
        if clock() > stop_at:
            break
    received = proxy.count(sent)
    return one_way_outcome(sent, 0, ("count", received), clock() - start)


def pyro5_round_trip(proxy: Any, n: int, cap: float) -> Outcome:
    take = proxy.take
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        if take(done) != 1:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


def pyro5_client(port: int, sizes: Sizes, tls: TlsFiles | None) -> dict[str, Outcome]:
    api = _pyro5(tls, server=False)
    results: dict[str, Outcome] = {}
    with api.Proxy(f"PYRO:{PYRO_OBJECT}@{HOST}:{port}") as proxy:
        proxy._pyroTimeout = OP_TIMEOUT + PYRO_COUNT_WAIT
        proxy._pyroBind()  # connect (and the TLS handshake) outside the timed loops
        for sz in (sizes.warmup(), sizes):
            with quiet_gc():
                results["oneway"] = pyro5_one_way(proxy, sz.small, sz.cap)
            with quiet_gc():
                results["roundtrip"] = pyro5_round_trip(proxy, sz.deliver, sz.cap)
    return results


# -- raw trio floor -------------------------------------------------------------------


def raw_client(port: int, sizes: Sizes, tls: TlsFiles | None) -> dict[str, Outcome]:
    import trio

    results: dict[str, Outcome] = {}

    async def main() -> None:
        stream: trio.abc.Stream = await trio.open_tcp_stream(HOST, port)
        if tls is not None:
            stream = trio.SSLStream(stream, raw_tls_contexts(tls)[1], server_hostname=None)
            await stream.do_handshake()
        async with stream:
            reader = remote.FrameReader(stream)
            for sz in (sizes.warmup(), sizes):
                with quiet_gc():
                    results["oneway"] = await remote.raw_one_way(
                        stream, reader, sz.small, False, sz.cap
                    )
                with quiet_gc():
                    results["roundtrip"] = await remote.raw_echo(
                        stream, reader, sz.deliver, sz.cap, b"d"
                    )
            await stream.send_all(remote.frame(b"Q"))

    trio.run(main)
    return results


# -- worker entry points --------------------------------------------------------------


def serve(system: str, tls: TlsFiles | None, deadline: float) -> None:
    arm_watchdog(deadline + 5, exit_on_stdin_eof=True)
    if system == "triopycos":
        remote.triopycos_serve(deadline, tls)
    elif system in ("pycos", "pycos-stream"):
        remote.pycos_serve(deadline, stream=system == "pycos-stream", tls=tls)
    elif system == "pyro5":
        pyro5_serve(tls)
    else:
        remote.raw_serve(deadline, tls)


def client(system: str, port: int, sizes: Sizes, tls: TlsFiles | None) -> dict[str, float]:
    runners: dict[str, Callable[[], dict[str, Outcome]]] = {
        "triopycos": lambda: triopycos_client(port, sizes, tls),
        "pycos": lambda: pycos_client(port, sizes, tls, stream=False),
        "pycos-stream": lambda: pycos_client(port, sizes, tls, stream=True),
        "pyro5": lambda: pyro5_client(port, sizes, tls),
        "raw": lambda: raw_client(port, sizes, tls),
    }
    flat: dict[str, float] = {}
    for key, outcome in runners[system]().items():
        flat[key] = outcome.value
        flat[f"{key}.failed"] = float(outcome.failed)
        if outcome.detail:
            print(f"{system} {key}: {outcome.detail}", file=sys.stderr)
    return flat


def run_round(system: str, *, quick: bool, deadline: float, tls: TlsFiles) -> dict[str, float]:
    """One round of one system (also what ``bench/run.py`` calls): plain, then TLS;
    keys ``"<mode>.<metric>"`` and ``"<mode>.<metric>.failed"``."""
    script = str(Path(__file__).resolve())
    common = ["--deadline", f"{deadline:g}", *(["--quick"] if quick else [])]
    out: dict[str, float] = {}
    for mode in MODES:
        certs = ["--certs", tls.folder] if mode == "tls" else []

        def client_argv(port: int, certs: list[str] = certs) -> list[str]:
            return [script, "--client", system, "--port", str(port), *certs, *common]

        data = run_with_server(
            [script, "--serve", system, *certs, *common], client_argv, timeout=deadline + 10
        )
        out.update((f"{mode}.{key}", value) for key, value in data.items())
    return out


# -- the report -----------------------------------------------------------------------

#: Median of one system's values of one key ("<mode>.<metric>"), NaN if none.
MedianOf = Callable[[str, str], float]


def table(value: MedianOf, systems: Sequence[str]) -> str:
    """The side-by-side table: a row per mode and metric, a column per system, then
    the ratios of triopycos to pycos, to Pyro5 (> 1: triopycos better) and to the
    floor ("x floor": triopycos's cost over the floor's)."""
    headers = [
        "benchmark",
        *(COLUMN_NAMES[s] for s in systems),
        "vs pycos",
        "vs Pyro5",
        "x floor",
    ]
    rows: list[list[str]] = []
    for mode in MODES:
        for m in METRICS:
            key = f"{mode}.{m.key}"
            ours = value("triopycos", key)
            cells = [f"{MODE_LABELS[mode]}{m.label} ({m.unit})"]
            cells += [format_value(value(s, key) * m.scale) for s in systems]
            for other in ("pycos", "pyro5"):
                r = ratio(m, ours, value(other, key))
                cells.append("n/a" if math.isnan(r) else f"{r:.2f}x")
            f = ratio(m, ours, value("raw", key))
            cells.append("n/a" if math.isnan(f) or f == 0 else f"{1 / f:.2f}")
            rows.append(cells)
    return format_table(headers, rows)


def tls_costs(value: MedianOf, systems: Sequence[str]) -> str:
    """What TLS costs each system: TLS over plain, per metric."""
    parts = []
    for s in systems:
        oneway = value(s, "plain.oneway") / value(s, "tls.oneway")
        trip = value(s, "tls.roundtrip") / value(s, "plain.roundtrip")
        parts.append(f"{COLUMN_NAMES[s]} {oneway:.2f}x slower one-way, {trip:.2f}x round trip")
    return "TLS over plain: " + "; ".join(parts)


def drive(args: argparse.Namespace) -> int:
    started = clock()
    systems = list(args.systems)
    collected: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
    errors = 0
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        tls = make_tls_files(folder)
        for rnd in range(args.rounds):
            shift = rnd % len(systems)
            for system in systems[shift:] + systems[:shift]:
                try:
                    data = run_round(system, quick=args.quick, deadline=args.deadline, tls=tls)
                except (WorkerError, subprocess.SubprocessError) as exc:
                    errors += 1
                    print(f"round {rnd + 1}, {system}: FAILED: {exc}", file=sys.stderr)
                    continue
                for key, v in data.items():
                    collected[system][key].append(v)
            done = f"round {rnd + 1}/{args.rounds} done ({clock() - started:.0f} s)"
            print(done, file=sys.stderr)

    def value(system: str, key: str) -> float:
        finite = [v for v in collected.get(system, {}).get(key, []) if math.isfinite(v)]
        return median(finite) if finite else math.nan

    print(
        f"One-way and round trip, plain and TLS: median of {args.rounds} round(s) over "
        f"127.0.0.1{' (--quick sizes)' if args.quick else ''}\n"
        f"python {platform.python_version()}, trio {version('trio')}, pycos "
        f"{version('pycos')}, Pyro5 {version('Pyro5')}, serpent {version('serpent')}; "
        f"{os.cpu_count()} CPUs; load average {load_before} before, {load_average()} after\n"
    )
    print(table(value, systems))
    print()
    print(tls_costs(value, systems))
    failed = [
        f"  {COLUMN_NAMES[s]} {key}: {sum(v):,.0f}"
        for s, keys in collected.items()
        for key, v in sorted(keys.items())
        if key.endswith(".failed") and sum(v) > 0
    ]
    if failed:
        print("\nFailed messages/calls:\n" + "\n".join(failed))
    print(f"\ntotal time {clock() - started:.0f} s")
    return 1 if errors else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = round_parser(__doc__, SYSTEMS, deadline=60.0)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    args = round_args(parser, argv)
    if args.client and not 0 < args.port < 65536:
        parser.error("--client needs --port")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tls = TlsFiles(args.certs) if args.certs else None
    if args.serve:
        serve(args.serve, tls, args.deadline)
        return 0
    if args.client:
        arm_watchdog(args.deadline)
        emit_json(client(args.client, args.port, sizes_for(args.client, args.quick), tls))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
