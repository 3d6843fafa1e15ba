"""File-transfer throughput: triopycos's ``send_file`` against pycos 4.12.2's.

Run: ``python bench/files.py [--size MIB] [--rounds N]``

The driver writes one file of random bytes (256 MiB by default) in a temporary
folder.  Every round, for each system (the order rotates between rounds), it
starts two fresh processes on loopback: a *receiver* (``--serve SYSTEM``) whose
``dest_path`` is a folder of its own, and a *sender* (``--send SYSTEM``) that times
one ``send_file`` of the whole file with ``time.perf_counter`` (connecting included;
pycos peers first, untimed, since its ``send_file`` needs a known peer).  The driver
then checks the received file (size and sha256) and removes it, and prints the
median throughput of each system and their ratio.  A third, diagnostic system,
``triopycos-nosha``, is triopycos with its sha256 replaced by a no-op in both
processes: it shows what the checksum (which pycos does not have) costs.

Only loopback: every node binds 127.0.0.1 and nothing discovers peers (pycos:
``host="127.0.0.1", tcp_port=0, udp_port=0, discover_peers=False``).  Every process
has a watchdog, the driver bounds the sender's run, and the receiver is killed in a
``finally`` whatever happens.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    REPO_ROOT,
    Metric,
    WorkerError,
    clock,
    comparison_table,
    emit_json,
    run_worker,
)

HOST = "127.0.0.1"
SECRET = "bench-files"
SYSTEMS = ("triopycos", "pycos", "triopycos-nosha")
METRIC = Metric("throughput", "send_file", "MB/s", True, 1e-6)
#: Seconds a sender may take for one file (it is killed after that).
SEND_DEADLINE = 300.0


# -- workers --------------------------------------------------------------------------


def arm_watchdog(seconds: float, *, exit_on_stdin_eof: bool = False) -> None:
    """End this process after ``seconds`` whatever it is doing, and (receivers) as
    soon as the driver closes our stdin or dies."""
    timer = threading.Timer(seconds, _hard_exit, args=(f"deadline of {seconds:.0f} s passed", 3))
    timer.daemon = True
    timer.start()
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            while os.read(0, 4096):
                pass
            _hard_exit("", 0)

        threading.Thread(target=watch_stdin, daemon=True).start()


def _hard_exit(why: str, code: int) -> None:
    if why:
        print(f"bench/files.py worker {os.getpid()}: {why}, exiting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(code)


def announce_ready(addr: str, port: int) -> None:
    print(f"ready {addr} {port}", flush=True)
    os.dup2(2, 1)  # anything printed later goes to stderr


def _pycos_scheduler(name: str, dest: str | None = None) -> Any:
    import pycos
    import pycos.netpycos

    pycos.logger.setLevel(pycos.Logger.CRITICAL)
    pycos.logger.stream = sys.stderr  # stdout is for the ready line / JSON
    return pycos.netpycos.Pycos(
        host=HOST,
        tcp_port=0,
        udp_port=0,
        name=name,
        discover_peers=False,
        secret=SECRET,
        dest_path=dest,
    )


def pycos_serve(dest: str, deadline: float) -> None:
    scheduler = _pycos_scheduler("bench-files-receiver", dest)
    try:
        loc = scheduler.location
        announce_ready(str(loc.addr), int(loc.port))
        time.sleep(deadline)  # the driver ends us (stdin closed) or the watchdog does
    finally:
        scheduler.terminate()


def pycos_send(port: int, file: str) -> dict[str, float]:
    import pycos
    import pycos.netpycos

    scheduler = _pycos_scheduler("bench-files-sender")

    def sender(task: Any = None) -> Generator[Any, Any, tuple[object, float]]:
        loc = pycos.netpycos.Location(HOST, port)
        if (yield scheduler.peer(loc)) != 0:
            return "peer failed", 0.0
        start = clock()
        result = yield scheduler.send_file(loc, file, timeout=60)
        return result, clock() - start

    try:
        value = pycos.Task(sender).value()
    finally:
        scheduler.terminate()
    result, elapsed = value
    if result != 0:
        raise RuntimeError(f"pycos send_file returned {result!r}")
    return {"throughput": os.path.getsize(file) / elapsed, "seconds": elapsed}


def _without_checksum() -> None:
    """Diagnostic only ("triopycos-nosha"): replace the sha256 of triopycos's file
    service in this process by a no-op, to show what the checksum costs.  Not a mode
    of the library: both processes of that system do it, so the digests (all zeros)
    still agree."""
    import types

    import triopycos.services.files as files

    class NoHash:
        def update(self, data: object) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(32)

    vars(files)["hashlib"] = types.SimpleNamespace(sha256=NoHash)


def triopycos_serve(dest: str, deadline: float) -> None:
    import trio

    from triopycos import open_pycos

    async def main() -> None:
        async with open_pycos(
            name="bench-files-receiver",
            node=HOST,
            tcp_port=0,
            discover_peers=False,
            secret=SECRET,
            dest_path=dest,
        ) as node:
            announce_ready(node.location.addr, node.location.port)
            await trio.sleep(deadline)
            node.terminate()

    trio.run(main)


def triopycos_send(port: int, file: str) -> dict[str, float]:
    import trio

    from triopycos import Location, open_pycos

    async def main() -> tuple[object, float]:
        async with open_pycos(
            name="bench-files-sender", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            start = clock()
            result = await node.send_file(Location(HOST, port), file, timeout=60)
            return result, clock() - start

    result, elapsed = trio.run(main)
    if result != 0:
        raise RuntimeError(f"triopycos send_file returned {result!r}")
    return {"throughput": os.path.getsize(file) / elapsed, "seconds": elapsed}


# -- driver ---------------------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _read_ready(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The receiver's port, from its "ready ADDR PORT" line."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    end = time.monotonic() + timeout
    while b"\n" not in data:
        left = end - time.monotonic()
        if left <= 0:
            raise WorkerError(f"receiver not ready within {timeout:.0f} s")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise WorkerError(f"receiver exited before it was ready ({proc.poll()})")
            data += chunk
    words = data.split(b"\n", 1)[0].decode().split()
    if len(words) != 3 or words[0] != "ready":
        raise WorkerError(f"unexpected line from the receiver: {data!r}")
    return int(words[2])


def _stop(proc: subprocess.Popen[bytes]) -> None:
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


def _sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def run_round(system: str, file: str, digest: str, dest_root: str) -> float:
    """One transfer of ``file`` by ``system``; its throughput in bytes/s."""
    script = str(Path(__file__).resolve())
    dest = os.path.join(dest_root, f"dest-{system}")
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    # Start every round with no dirty pages being written back: the file system's
    # write speed then depends on this round's writes only.
    os.sync()
    receiver = subprocess.Popen(
        [sys.executable, script, "--serve", system, "--dest", dest],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_worker_env(),
    )
    try:
        port = _read_ready(receiver, timeout=30)
        result = run_worker(
            [script, "--send", system, "--port", str(port), "--file", file],
            timeout=SEND_DEADLINE + 10,
        )
    finally:
        _stop(receiver)
    received = os.path.join(dest, os.path.basename(file))
    if not os.path.isfile(received) or _sha256(received) != digest:
        raise WorkerError(f"{system}: the received file is missing or differs")
    shutil.rmtree(dest)
    return result["throughput"]


def drive(args: argparse.Namespace) -> int:
    work = tempfile.mkdtemp(prefix="bench-files-")
    dest_root = tempfile.mkdtemp(prefix="bench-files-dest-", dir=args.dest_root)
    try:
        file = os.path.join(work, "payload.bin")
        with open(file, "wb") as f:
            for _ in range(args.size):
                f.write(os.urandom(1 << 20))
        digest = _sha256(file)
        collected: dict[str, list[float]] = {system: [] for system in SYSTEMS}
        for i in range(args.rounds):
            # Rotate the order: no system always runs first (or right after another).
            order = SYSTEMS[i % len(SYSTEMS) :] + SYSTEMS[: i % len(SYSTEMS)]
            for system in order:
                value = run_round(system, file, digest, dest_root)
                collected[system].append(value)
                print(f"round {i + 1} {system}: {value / 1e6:.0f} MB/s", file=sys.stderr)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"send_file of {args.size} MiB between two processes on loopback, received")
        print(f"under {dest_root}; median of {args.rounds} rounds (MB = 10^6 bytes);")
        print(f"{os.cpu_count()} CPUs, load average after the run {load}\n")
        rows = [(METRIC, collected["triopycos"], collected["pycos"])]
        print(comparison_table(rows, "triopycos", "pycos 4.12.2", spread=True))
        print(
            "\nDiagnostic, not a mode of the library: triopycos with the sha256 of both"
            "\nsides replaced by a no-op (pycos has no checksum):\n"
        )
        rows = [(METRIC, collected["triopycos-nosha"], collected["pycos"])]
        print(comparison_table(rows, "triopycos, no sha256", "pycos 4.12.2", spread=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest_root, ignore_errors=True)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dest-root",
        help="folder under which the receivers' dest_path folders go (default: the "
        "temporary folder; /dev/shm takes the disk out of the measurement)",
    )
    parser.add_argument("--serve", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--send", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        arm_watchdog(SEND_DEADLINE + 60, exit_on_stdin_eof=True)
        if args.serve == "triopycos-nosha":
            _without_checksum()
        serve = pycos_serve if args.serve == "pycos" else triopycos_serve
        serve(args.dest, SEND_DEADLINE + 30)
        return 0
    if args.send:
        arm_watchdog(SEND_DEADLINE)
        if args.send == "triopycos-nosha":
            _without_checksum()
        send = pycos_send if args.send == "pycos" else triopycos_send
        emit_json(send(args.port, args.file))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
