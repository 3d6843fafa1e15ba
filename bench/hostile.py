"""What issue 16's attacks cost a node now, and how fast real peers get in under a flood.

Run: ``python bench/hostile.py [--flood-seconds S] [--size N] [--trials T]``

Three processes on 127.0.0.1: the *target* node (``--serve``, with a secret, an echo
task and a destination folder), a *flooder* (``--flood``: ``--size`` connections
that never finish a handshake, each reopened as soon as the target drops it; half
say nothing, half start a frame and stop; ``--hello`` makes them send a valid hello
and stall before the proof instead), and the driver, which holds an established peer
of the target and does the measuring:

1. one-frame attacks, each sent ``--rounds`` times: a hello whose version is a big
   integer (tag 2), a 700-byte shared-reference graph (tags 28/29, 5 levels of 40),
   a hello with a regular expression tag in it; the target's CPU time per attack and
   its RSS before and after (read from /proc);
2. the flood (``--flooders`` processes share the ``--size`` connections) for
   ``--flood-seconds``: spread over it, ``--trials`` times a new node peers with the target
   (time to ``peer() == 0``) and sends it a 1 MiB file (time to ``send_file() == 0``),
   and the established peer times ``deliver`` round trips; the target's CPU share,
   RSS, evictions;
3. the offline guess: one scrypt (the proof key) against one HMAC (what a guess
   cost with version 1 of the handshake).

Only loopback; bounded everywhere (the flooder's connections in all, every phase's
time); the target and the flooder have watchdogs and are killed in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cbor2
import trio

from bench._common import (
    HOST,
    announce_ready,
    arm_watchdog,
    format_table,
    load_average,
    read_ready,
    start_server,
    stop_process,
)
from triopycos import Location, Task, open_pycos
from triopycos.protocol.auth import derive_key
from triopycos.protocol.framing import encode_frame
from triopycos.protocol.handshake import PROTOCOL_VERSION

SECRET = "bench-hostile"
MAX_CONNECTIONS = 2_000_000  # the flooder's bound in all, whatever the duration
DEADLINE = 900.0


def _hello(**fields: Any) -> dict[str, Any]:
    message = {
        "triopycos": PROTOCOL_VERSION,
        "id": os.urandom(16),
        "name": "attacker",
        "locations": [["127.0.0.1", 1]],
        "nonce": os.urandom(32),
        "purpose": "peer",
    }
    return message | fields


def _shared_graph(levels: int, width: int) -> bytes:
    item = b"\xd8\x1c\x81\x00"
    for level in range(1, levels + 1):
        ref = b"\xd8\x1d" + cbor2.dumps(levels - (level - 1))
        item = b"\xd8\x1c" + bytes([0x98, width]) + item + ref * (width - 1)
    return item


def _graph_hello() -> bytes:
    fields = cbor2.dumps(_hello())
    key = cbor2.dumps("triopycos")
    rest = fields[1 + len(key) + len(cbor2.dumps(PROTOCOL_VERSION)) :]
    return fields[:1] + key + _shared_graph(5, 40) + rest


ATTACKS: dict[str, Callable[[], bytes]] = {
    "bignum version": lambda: cbor2.dumps(_hello(triopycos=1 << 16000)),
    "shared-reference graph": _graph_hello,
    "regex tag": lambda: cbor2.dumps(_hello(extra=cbor2.CBORTag(35, "(a+)+$"))),
}


# -- the target -------------------------------------------------------------------------


async def serve(dest: str) -> None:
    logging.getLogger("triopycos").setLevel(logging.ERROR)  # refusals are expected here
    async with open_pycos(
        name="target", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET, dest_path=dest
    ) as pycos:

        async def echo(task: Task) -> None:
            task.set_daemon()
            task.register("echo")
            while True:
                await task.receive()

        pycos.spawn(echo)
        announce_ready(pycos.location.addr, pycos.location.port)
        await trio.sleep_forever()  # until the driver closes our stdin (watchdog)


# -- the flooder ------------------------------------------------------------------------


async def flood(host: str, port: int, size: int, hello: bool) -> None:
    opened = 0

    async def attacker(index: int) -> None:
        nonlocal opened
        if hello:
            opening = encode_frame(cbor2.dumps(_hello()))
        else:
            opening = b"" if index % 2 else b"\x00\x00\x01"
        while opened < MAX_CONNECTIONS:
            opened += 1
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                await trio.lowlevel.checkpoint()
                continue
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    if opening:
                        await stream.send_all(opening)
                    while await stream.receive_some(4096):
                        pass

    async with trio.open_nursery() as nursery:
        for index in range(size):
            nursery.start_soon(attacker, index)
        announce_ready(host, port)


# -- the driver -------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _send_frame(location: Location, payload: bytes) -> None:
    stream = await trio.open_tcp_stream(location.addr, location.port)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(encode_frame(payload))
            while await stream.receive_some(65536):
                pass


async def _round_trips(echo: Task, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        assert await echo.deliver(i, timeout=2) == 1
        times.append(time.perf_counter() - start)
    return times


async def _newcomers(
    location: Location, trials: int, file: Path
) -> tuple[list[float], list[float], int]:
    """Times for ``trials`` new nodes to peer and to send a file; and how many of
    them were refused (peer() -1: their handshake was evicted)."""
    peered, sent, refused = [], [], 0
    for index in range(trials):
        async with open_pycos(
            name=f"newcomer{index}", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as newcomer:
            start = time.perf_counter()
            if await newcomer.peer(location) != 0:
                refused += 1
                continue
            peered.append(time.perf_counter() - start)
            folder = f"n{next(_folders)}"  # a new name: a file already there is not sent
            start = time.perf_counter()
            if await newcomer.send_file(location, file, folder, timeout=10) != 0:
                refused += 1
                continue
            sent.append(time.perf_counter() - start)
    return peered, sent, refused


_folders = itertools.count()


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "none"
    return f"{statistics.median(values) * 1e3:.1f} (max {max(values) * 1e3:.1f})"


async def drive(args: argparse.Namespace, target_pid: int, location: Location, file: Path) -> None:
    rows: list[list[str]] = []
    async with open_pycos(
        name="driver", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
    ) as driver:
        assert await driver.peer(location) == 0
        echo = await Task.locate("echo", location, timeout=5)
        assert echo is not None
        base_rtt = await _round_trips(echo, 200)
        base_peer, base_file, refused = await _newcomers(location, args.trials, file)
        assert refused == 0
        print(f"idle: deliver {_ms(base_rtt)} ms, new peer {_ms(base_peer)} ms, "
              f"1 MiB file {_ms(base_file)} ms")  # fmt: skip

        for name, payload in ATTACKS.items():
            data = payload()
            cpu, rss = _cpu(target_pid), _rss(target_pid)
            started = time.perf_counter()
            for _ in range(args.rounds):
                await _send_frame(location, data)
            wall = time.perf_counter() - started
            per = (_cpu(target_pid) - cpu) / args.rounds
            grown = (_rss(target_pid) - rss) / 2**20
            rows.append([name, f"{len(data)} B", f"{per * 1e6:.0f} us", f"{grown:+.1f} MiB",
                         f"{wall / args.rounds * 1e3:.2f} ms"])  # fmt: skip
        assert driver.peers() == [location]
        print(format_table(["attack", "size", "target CPU each", "target RSS", "wall each"], rows))

        per = args.size // args.flooders
        argv = [__file__, "--flood", location.addr, str(location.port), "--size", str(per)]
        flooders = [
            start_server([*argv, "--hello"] if args.hello else argv) for _ in range(args.flooders)
        ]
        try:
            for flooder in flooders:
                read_ready(flooder, timeout=30)
            await trio.sleep(1.0)  # let them fill every slot before measuring
            status = await driver.status(location)
            assert status is not None
            evicted0 = status.statistics.handshakes_refused_busy
            cpu0, rss0 = _cpu(target_pid), _rss(target_pid)
            started = time.perf_counter()
            rtt: list[float] = []
            peered: list[float] = []
            sent: list[float] = []
            refused = 0
            async with trio.open_nursery() as nursery:

                async def newcomers() -> None:
                    nonlocal refused
                    # Spread over the flood: each waits its turn, then peers and sends.
                    for _ in range(args.trials):
                        await trio.sleep(args.flood_seconds / (args.trials + 1))
                        p, s, r = await _newcomers(location, 1, file)
                        peered.extend(p)
                        sent.extend(s)
                        refused += r
                    nursery.cancel_scope.cancel()

                nursery.start_soon(newcomers)
                with trio.fail_after(args.flood_seconds * 3):
                    while True:  # until the newcomers are done
                        rtt += await _round_trips(echo, 10)
                        await trio.sleep(0.01)
            elapsed = time.perf_counter() - started
            status = await driver.status(location)
            assert status is not None
            stats = status.statistics
            cpu1, rss1 = _cpu(target_pid), _rss(target_pid)
        finally:
            for flooder in flooders:
                stop_process(flooder)
        kind = "valid hello, then nothing" if args.hello else "silent or a partial frame"
        print(f"flood: {args.size} connections ({kind}) from {args.flooders} processes, "
              f"reopened at once, {elapsed:.1f} s")  # fmt: skip
        print(f"  evicted: {(stats.handshakes_refused_busy - evicted0) / elapsed:.0f}/s; "
              f"held: {stats.handshakes_pending}; target CPU "
              f"{(cpu1 - cpu0) / elapsed * 100:.0f}% of a core; RSS "
              f"{rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB")  # fmt: skip
        print(f"  new peer in: {_ms(peered)} ms; 1 MiB file in: {_ms(sent)} ms "
              f"({refused} of {2 * args.trials} attempts refused); "
              f"deliver round trip: {_ms(rtt)} ms ({len(rtt)} samples)")  # fmt: skip
        assert driver.peers() == [location], "the established peer was lost"


def guess_costs() -> None:
    secrets = [os.urandom(16) for _ in range(5)]
    times = []
    for secret in secrets:
        start = time.process_time()
        derive_key(secret)
        times.append(time.process_time() - start)
    start = time.process_time()
    for _ in range(10_000):
        hmac.new(b"candidate", b"x" * 53, hashlib.sha256).digest()
    per_hmac = (time.process_time() - start) / 10_000
    print(f"offline guess: scrypt {statistics.median(times) * 1e3:.1f} ms (N=2**14, r=8, "
          f"p=1, 16 MiB) vs HMAC-SHA256 {per_hmac * 1e6:.2f} us: "
          f"{statistics.median(times) / per_hmac:,.0f}x")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200, help="flood connections")
    parser.add_argument("--hello", action="store_true", help="flooders send a valid hello")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="the flood's length")
    parser.add_argument("--flooders", type=int, default=2, help="flooding processes")
    parser.add_argument("--trials", type=int, default=10, help="newcomers during the flood")
    parser.add_argument("--rounds", type=int, default=500, help="sends of each one-frame attack")
    parser.add_argument("--serve", metavar="DEST", help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        arm_watchdog(DEADLINE, exit_on_stdin_eof=True)
        trio.run(serve, args.serve)
        return 0
    if args.flood:
        arm_watchdog(DEADLINE, exit_on_stdin_eof=True)
        trio.run(flood, args.flood[0], int(args.flood[1]), args.size, args.hello)
        return 0
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "one-mib.bin"
        file.write_bytes(os.urandom(1 << 20))
        dest = Path(folder) / "dest"
        dest.mkdir()
        target = start_server([__file__, "--serve", str(dest)])
        try:
            addr, port = read_ready(target, timeout=30)
            trio.run(drive, args, target.pid, Location(addr, port), file)
        finally:
            stop_process(target)
    guess_costs()
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
