"""File-transfer throughput: triopycos's ``send_file`` against pycos 4.12.2's.

Run: ``python bench/files.py [--size MIB] [--rounds N]``

The driver writes one file of random bytes (256 MiB by default) in a temporary
folder.  Every round, for each system (the order rotates between rounds), it
starts two fresh processes on loopback: a *receiver* (``--serve SYSTEM``) whose
``dest_path`` is a folder of its own, and a *sender* (``--send SYSTEM``) that times
one ``send_file`` of the whole file with ``time.perf_counter`` (connecting included;
pycos peers first, untimed, since its ``send_file`` needs a known peer).  The driver
then checks the received file (size and sha256) and removes it, and prints the
median throughput of each system and their ratio.  The third, ``raw``, is the
floor: plain trio TCP, an 8-byte size then the content, read 1 MiB at a time with
no protocol and no threads (the receiver writes into a file in its folder, renamed
when complete, like the others).  The floor writes at most 128 KiB per system call,
as triopycos does: on Linux 6.x a 1 MiB write gets large page-cache folios, and on a
VM whose memory the host backs on first touch those came from never-touched memory
in about half the runs and cost several times the system time (pycos writes
1,024,000 bytes at offsets that are not multiples of 8 pages, so it gets small
folios anyway).  ``--systems`` picks the systems to run.

Only loopback: every node binds 127.0.0.1 and nothing discovers peers (pycos:
``host="127.0.0.1", tcp_port=0, udp_port=0, discover_peers=False``).  Every process
has a watchdog, the driver bounds the sender's run, and the receiver is killed in a
``finally`` whatever happens.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    Metric,
    WorkerError,
    announce_ready,
    arm_watchdog,
    clock,
    comparison_table,
    emit_json,
    run_with_server,
)

if TYPE_CHECKING:
    import trio

SECRET = "bench-files"
SYSTEMS = ("triopycos", "pycos", "raw")
#: Bytes the raw floor reads and writes at a time.
RAW_BLOCK = 1 << 20
#: Bytes the raw floor writes per system call (see the module docstring).
RAW_WRITE = 128 * 1024
METRIC = Metric("throughput", "send_file", "MB/s", True, 1e-6)
#: Seconds a sender may take for one file (it is killed after that).
SEND_DEADLINE = 300.0


# -- workers --------------------------------------------------------------------------


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


async def _receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise RuntimeError("raw: connection closed early")
        data += chunk
    return data


def raw_serve(dest: str, deadline: float) -> None:
    """The floor's receiver: one connection, an 8-byte size, a 2-byte name length,
    the name, then the content.  Its file I/O is blocking, in the trio thread, on
    purpose: the floor is the simplest loop (the disk of a 2-core machine is not the
    limit: the page cache takes the writes)."""
    import trio

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        listener = listeners[0]
        addr = listener.socket.getsockname()
        announce_ready(str(addr[0]), int(addr[1]))
        with trio.move_on_after(deadline):
            stream = await listener.accept()
            async with stream:
                header = await _receive_exactly(stream, 10)
                left = int.from_bytes(header[:8], "big")
                name = (await _receive_exactly(stream, int.from_bytes(header[8:], "big"))).decode()
                part = os.path.join(dest, ".raw.part")
                with open(part, "wb", buffering=0) as f:  # noqa: ASYNC230 (see above)
                    while left > 0:
                        data = await stream.receive_some(min(RAW_BLOCK, left))
                        if not data:
                            raise RuntimeError("raw: connection closed early")
                        view = memoryview(data)
                        for i in range(0, len(view), RAW_WRITE):
                            f.write(view[i : i + RAW_WRITE])
                        left -= len(data)
                os.replace(part, os.path.join(dest, os.path.basename(name)))
                await stream.send_all(b"k")

    trio.run(main)


def raw_send(port: int, file: str) -> dict[str, float]:
    import trio

    size = os.path.getsize(file)
    name = os.path.basename(file).encode()

    async def main() -> float:
        start = clock()
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            await stream.send_all(size.to_bytes(8, "big") + len(name).to_bytes(2, "big") + name)
            buf = bytearray(RAW_BLOCK)
            view = memoryview(buf)
            with open(file, "rb", buffering=0) as f:  # noqa: ASYNC230 (as raw_serve)
                while n := f.readinto(buf):
                    await stream.send_all(view[:n])
            if await stream.receive_some(1) != b"k":
                raise RuntimeError("raw: no acknowledgement")
        return clock() - start

    elapsed = trio.run(main)
    return {"throughput": size / elapsed, "seconds": elapsed}


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
    result = run_with_server(
        [script, "--serve", system, "--dest", dest],
        lambda port: [script, "--send", system, "--port", str(port), "--file", file],
        timeout=SEND_DEADLINE + 10,
    )
    received = os.path.join(dest, os.path.basename(file))
    if not os.path.isfile(received) or _sha256(received) != digest:
        raise WorkerError(f"{system}: the received file is missing or differs")
    shutil.rmtree(dest)
    return result["throughput"]


def make_payload(folder: str, size_mib: int) -> tuple[str, str]:
    """Write ``size_mib`` MiB of random bytes in ``folder``: (path, sha256 hex)."""
    file = os.path.join(folder, "payload.bin")
    with open(file, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    return file, _sha256(file)


def drive(args: argparse.Namespace) -> int:
    work = tempfile.mkdtemp(prefix="bench-files-")
    dest_root = tempfile.mkdtemp(prefix="bench-files-dest-", dir=args.dest_root)
    try:
        file, digest = make_payload(work, args.size)
        systems = tuple(args.systems)
        collected: dict[str, list[float]] = {system: [] for system in systems}
        for i in range(args.rounds):
            # Rotate the order: no system always runs first (or right after another).
            order = systems[i % len(systems) :] + systems[: i % len(systems)]
            for system in order:
                value = run_round(system, file, digest, dest_root)
                collected[system].append(value)
                print(f"round {i + 1} {system}: {value / 1e6:.0f} MB/s", file=sys.stderr)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"send_file of {args.size} MiB between two processes on loopback, received")
        print(f"under {dest_root}; median of {args.rounds} rounds (MB = 10^6 bytes);")
        print(f"{os.cpu_count()} CPUs, load average after the run {load}\n")
        tables = (
            ("triopycos", "pycos", "triopycos", "pycos 4.12.2", ""),
            (
                "triopycos",
                "raw",
                "triopycos",
                "raw trio",
                "The floor: plain trio TCP, no protocol, no threads:",
            ),
        )
        for ours, theirs, ours_label, theirs_label, heading in tables:
            if ours in systems and theirs in systems:
                if heading:
                    print(f"\n{heading}\n")
                rows = [(METRIC, collected[ours], collected[theirs])]
                print(comparison_table(rows, ours_label, theirs_label, spread=True))
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
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        default=list(SYSTEMS),
        help="the systems to run (default: all); a table needs both of its columns",
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
        serves = {"pycos": pycos_serve, "raw": raw_serve}
        serves.get(args.serve, triopycos_serve)(args.dest, SEND_DEADLINE + 30)
        return 0
    if args.send:
        arm_watchdog(SEND_DEADLINE)
        sends = {"pycos": pycos_send, "raw": raw_send}
        emit_json(sends.get(args.send, triopycos_send)(args.port, args.file))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
