"""Soak: millions of messages through one peer pair, with memory watched.

Run: ``python bench/soak.py [--count 10000000] [--samples 20]``

Two processes on 127.0.0.1: a server whose task counts what it receives, and a
client that sends it ``--count`` messages (each a small tuple ``(i, "soak")``: the
codec's hooked path, not the plain one), yielding after every 1000.

Flow control, as a real sender needs against a slower receiver: after every
``--window`` messages the client sends a ``["sync", me]`` marker, which the server
answers, and it never has more than two markers unanswered.  Whatever is in flight
(at most two windows) is held by the receiver, decoded, in its task's mailbox while
that task catches up: the RSS it costs comes and goes with the window.

Samples: after every ``count / samples`` messages the client sends ``["stats", me]``
and waits until the server has answered it, i.e. until the server has received
everything sent so far (a quiet point: nothing in flight); the server answers with
its count, its RSS now and the largest RSS it saw at any marker.  One line per
sample: messages sent and received, both RSS.

"Flat memory": the RSS at the quiet points may go up and down (the allocator keeps
some of what the in-flight window used, and gives it back later), but must not
trend up: the least-squares slope of each process's RSS over the messages sent,
times the messages, must stay within ``--slack`` MB.  The first sample, the largest
and the last, and the peak (in-flight window included) are reported too.  Only
loopback; both processes have watchdogs.
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
WINDOW = 50_000


def serve(deadline: float) -> None:
    import trio

    from triopycos import open_pycos

    async def sink(task: Task) -> None:
        task.register(SINK)
        received = 0
        peak = 0
        while True:
            msg = await task.receive()
            if type(msg) is tuple:
                received += 1
            elif type(msg) is list:
                rss = rss_bytes()
                peak = max(peak, rss)
                if msg[0] == "sync":
                    msg[1].send(("synced",))
                elif msg[0] == "stats":
                    msg[1].send(("stats", received, rss, peak))
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


def client(port: int, count: int, samples: int, window: int) -> dict[str, float]:
    import trio

    from triopycos import Location, Task, open_pycos

    interval = max(BATCH, count // samples)
    rows: list[tuple[int, int, int, int, int, float]] = []

    async def body(task: Task) -> None:
        target = await Task.locate(SINK, Location(HOST, port), timeout=30)
        if target is None:
            raise RuntimeError("no sink")
        send = target.send
        start = time.perf_counter()
        unanswered = 0  # markers (sync or stats) without their answer yet
        sent = marked = sampled = 0

        async def answer() -> tuple[object, ...]:
            nonlocal unanswered
            reply = await task.receive(timeout=120)
            if not (type(reply) is tuple and reply[0] in ("synced", "stats")):
                raise RuntimeError(f"no answer from the server: {reply!r}")
            unanswered -= 1
            return reply

        while sent < count:
            upto = min(count, sent + BATCH)
            for i in range(sent, upto):
                if send((i, "soak")) != 0:
                    raise RuntimeError(f"message {i} refused")
            sent = upto
            await trio.lowlevel.checkpoint()
            if sent // window > marked:
                marked = sent // window
                send(["sync", task])
                unanswered += 1
                while unanswered > 2:
                    await answer()
            if sent // interval > sampled or sent == count:
                sampled = sent // interval
                send(["stats", task])
                unanswered += 1
                reply: tuple[object, ...] = ()
                while unanswered:
                    reply = await answer()
                assert reply[0] == "stats"
                _, received, server_rss, server_peak = reply
                assert isinstance(received, int) and isinstance(server_rss, int)
                assert isinstance(server_peak, int)
                elapsed = time.perf_counter() - start
                rows.append((sent, received, rss_bytes(), server_rss, server_peak, elapsed))
                print(
                    f"{elapsed:7.1f} s  sent {sent:>11,}  received {received:>11,}  RSS "
                    f"client {rss_bytes() / 1e6:6.1f} MB  server {server_rss / 1e6:6.1f} MB "
                    f"(peak {server_peak / 1e6:6.1f} MB)",
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

    def trend(column: int) -> float:
        """Least-squares growth of RSS column over the whole run, in bytes."""
        xs = [float(r[0]) for r in rows]
        ys = [float(r[column]) for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return 0.0
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * count

    return {
        "count": float(count),
        "client_trend": trend(2),
        "server_trend": trend(3),
        "seconds": last[5],
        "rate": count / last[5],
        "client_rss_first": float(first[2]),
        "client_rss_last": float(last[2]),
        "client_rss_max": float(max(r[2] for r in rows)),
        "server_rss_first": float(first[3]),
        "server_rss_last": float(last[3]),
        "server_rss_max": float(max(r[3] for r in rows)),
        "server_rss_peak": float(max(r[4] for r in rows)),
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
            "--window",
            str(args.window),
            "--deadline",
            f"{deadline:g}",
        ],
        timeout=deadline + 10,
    )
    growth = {side: r[f"{side}_trend"] / 1e6 for side in ("client", "server")}
    flat = all(g <= args.slack for g in growth.values())
    print(
        f"\nSoak: {r['count']:,.0f} messages through one peer pair on 127.0.0.1 in "
        f"{r['seconds']:.1f} s ({r['rate']:,.0f} msg/s), flow-control window "
        f"{args.window:,} messages; trio {version('trio')}; load average {load_before} "
        f"before, {load_average()} after"
    )
    for side in ("client", "server"):
        print(
            f"  {side} RSS: {r[f'{side}_rss_first'] / 1e6:.1f} MB at the first sample, "
            f"{r[f'{side}_rss_max'] / 1e6:.1f} MB at most, {r[f'{side}_rss_last'] / 1e6:.1f} MB "
            f"at the end (quiet points); trend over the run {growth[side]:+.1f} MB"
        )
    print(
        f"  server RSS peak at any marker (the in-flight window held in the mailbox "
        f"included): {r['server_rss_peak'] / 1e6:.1f} MB"
    )
    print(
        f"  memory {'flat' if flat else 'NOT flat'} (allowed trend: {args.slack:g} MB over the run)"
    )
    return 0 if flat else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000_000, help="messages (10,000,000)")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples (20)")
    parser.add_argument("--slack", type=float, default=8.0, help="MB of growth allowed (8)")
    parser.add_argument(
        "--window", type=int, default=WINDOW, help=f"messages per flow-control marker ({WINDOW:,})"
    )
    parser.add_argument("--deadline", type=float, default=1800.0, help="hard limit, s (1800)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 1 or args.samples < 1 or args.window < 1:
        parser.error("--count, --samples and --window must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        arm_watchdog(args.deadline + 5, exit_on_stdin_eof=True)
        serve(args.deadline)
        return 0
    if args.client:
        arm_watchdog(args.deadline)
        emit_json(client(args.port, args.count, args.samples, args.window))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
