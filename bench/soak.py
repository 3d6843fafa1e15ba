"""Soak: millions of messages through one peer pair, with memory watched.

Run: ``python bench/soak.py [--count 10000000] [--samples 20]``

Two processes on 127.0.0.1: a server whose task counts what it receives, and a
client that sends it ``--count`` messages (each a small tuple ``(i, "soak")``: the
codec's hooked path, not the plain one), yielding after every 1000.  After every
``count / samples`` messages the client also sends a ``["stats", me]`` request; the
server answers with how many messages it has and its RSS.  The client waits for the
answer to the request before the last one (so at most two intervals of messages
are ever in flight: flow control, as a real sender needs against a slower
receiver) and prints a line per answer: messages sent and received, both RSS.

"Flat memory": after the first sample (warm-up: buffers, caches, the allocator's
first arenas), neither process's RSS may grow by more than ``--slack`` MB; the
script says whether that held.  Only loopback; both processes have watchdogs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    announce_ready,
    arm_watchdog,
    emit_json,
    load_average,
    rss_bytes,
    run_with_server,
    version,
)

if TYPE_CHECKING:
    from triopycos import Task

SECRET = "bench-soak"
SINK = "soak_sink"
BATCH = 1000


def serve(deadline: float) -> None:
    import trio

    from triopycos import open_pycos

    async def sink(task: Task) -> None:
        task.register(SINK)
        received = 0
        while True:
            msg = await task.receive()
            if type(msg) is tuple:
                received += 1
            elif type(msg) is list and msg[0] == "stats":
                msg[1].send(("stats", received, rss_bytes()))
            elif msg == "quit":
                return

    async def main() -> None:
        with trio.move_on_after(deadline):
            async with open_pycos(
                name="soak-server", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
            ) as node:
                node.spawn(sink)
                announce_ready(node.location.addr, node.location.port)

    trio.run(main)


def client(port: int, count: int, samples: int) -> dict[str, float]:
    import trio

    from triopycos import Location, Task, open_pycos

    interval = max(BATCH, count // samples)
    rows: list[tuple[int, int, int, int, float]] = []

    async def body(task: Task) -> None:
        target = await Task.locate(SINK, Location(HOST, port), timeout=30)
        if target is None:
            raise RuntimeError("no sink")
        send = target.send
        start = time.perf_counter()
        asked = answered = 0
        sent = 0
        while sent < count:
            upto = min(count, sent + BATCH)
            for i in range(sent, upto):
                if send((i, "soak")) != 0:
                    raise RuntimeError(f"message {i} refused")
            sent = upto
            await trio.lowlevel.checkpoint()
            if sent // interval > asked or sent == count:
                send(["stats", task])
                asked += 1
                while asked - answered > (1 if sent < count else 0):
                    reply = await task.receive(timeout=120)
                    if not (type(reply) is tuple and reply[0] == "stats"):
                        raise RuntimeError(f"no stats: {reply!r}")
                    answered += 1
                    rows.append(
                        (sent, reply[1], rss_bytes(), reply[2], time.perf_counter() - start)
                    )
                    print(
                        f"{time.perf_counter() - start:7.1f} s  sent {sent:>11,}  received "
                        f"{reply[1]:>11,}  RSS client {rss_bytes() / 1e6:6.1f} MB  "
                        f"server {reply[2] / 1e6:6.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
        send("quit")

    async def main() -> None:
        async with open_pycos(
            name="soak-client", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            await node.spawn(body).finish()

    trio.run(main)
    if not rows or rows[-1][1] != count:
        raise RuntimeError(f"the server got {rows[-1][1] if rows else 0} of {count} messages")
    first, last = rows[0], rows[-1]
    return {
        "count": float(count),
        "seconds": last[4],
        "rate": count / last[4],
        "client_rss_first": float(first[2]),
        "client_rss_last": float(last[2]),
        "client_rss_max": float(max(r[2] for r in rows)),
        "server_rss_first": float(first[3]),
        "server_rss_last": float(last[3]),
        "server_rss_max": float(max(r[3] for r in rows)),
    }


def drive(args: argparse.Namespace) -> int:
    script = str(Path(__file__).resolve())
    deadline = args.deadline
    load_before = load_average()
    r = run_with_server(
        [script, "--serve", "--deadline", f"{deadline:g}"],
        lambda port: [
            script,
            "--client",
            "--port",
            str(port),
            "--count",
            str(args.count),
            "--samples",
            str(args.samples),
            "--deadline",
            f"{deadline:g}",
        ],
        timeout=deadline + 10,
    )
    growth = {
        side: (r[f"{side}_rss_max"] - r[f"{side}_rss_first"]) / 1e6 for side in ("client", "server")
    }
    flat = all(g <= args.slack for g in growth.values())
    print(
        f"\nSoak: {r['count']:,.0f} messages through one peer pair on 127.0.0.1 in "
        f"{r['seconds']:.1f} s ({r['rate']:,.0f} msg/s); trio {version('trio')}; load "
        f"average {load_before} before, {load_average()} after"
    )
    for side in ("client", "server"):
        print(
            f"  {side} RSS: {r[f'{side}_rss_first'] / 1e6:.1f} MB at the first sample, "
            f"{r[f'{side}_rss_max'] / 1e6:.1f} MB at most, {r[f'{side}_rss_last'] / 1e6:.1f} MB "
            f"at the end: grew {growth[side]:.1f} MB"
        )
    print(
        f"  memory {'flat' if flat else 'NOT flat'} (allowed growth after the first sample: "
        f"{args.slack:g} MB)"
    )
    return 0 if flat else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000_000, help="messages (10,000,000)")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples (20)")
    parser.add_argument("--slack", type=float, default=8.0, help="MB of growth allowed (8)")
    parser.add_argument("--deadline", type=float, default=1800.0, help="hard limit, s (1800)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 1 or args.samples < 1:
        parser.error("--count and --samples must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        arm_watchdog(args.deadline + 5, exit_on_stdin_eof=True)
        serve(args.deadline)
        return 0
    if args.client:
        arm_watchdog(args.deadline)
        emit_json(client(args.port, args.count, args.samples))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
