"""The demo's other nodes, beta and gamma: each runs in its own process.

    python -m triopycos.cli.demo._worker ROLE DIRECTOR_PORT [--peer PORT]...
        [--dest-path DIR] [--lifetime SECONDS]

Everything is on 127.0.0.1, without discovery: the worker peers with the director's
node (alpha) and with every ``--peer``, then tells alpha's ``director`` task what it
sees and does.  The secret comes in ``$TRIOPYCOS_DEMO_SECRET`` (not on the command
line, which other users of the machine can read).

What each role serves:

* both: a task subscribed to alpha's channel ``news`` that reports every message,
  and a task that reports peers going online and offline;
* beta: the task ``greeter`` (answers ``("hello", sender, name)`` and reports
  ``("note", text)``), and the RPS ``count_primes``;
* gamma: the task ``sleeper``, which waits to be terminated.

The worker leaves (saying goodbye to its peers) when its standard input closes: the
demo closes it to stop the worker, and the system closes it if the demo dies, so a
worker never outlives the demo.  ``--lifetime`` bounds it in any case.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import trio

from ... import open_pycos
from ..._channel import Channel
from ..._rps import RPS
from ..._task import Task
from ...values import Location, PeerStatus

HOST = "127.0.0.1"
SECRET_ENV = "TRIOPYCOS_DEMO_SECRET"


async def greeter(task: Task, director: Task) -> None:
    task.set_daemon()
    task.register("greeter")
    while True:
        match await task.receive():
            case ("hello", Task() as sender, str(name)):
                sender.send(f"hello, {name}! (greeter on beta)")
            case ("note", text):
                director.send(("greeter got", text))
            case _:
                pass


async def sleeper(task: Task) -> None:
    task.set_daemon()
    task.register("sleeper")
    while True:
        await task.receive()


async def count_primes(below: int) -> int:
    """An RPS: how many primes there are below ``below`` (a sieve)."""
    if not isinstance(below, int) or not 0 <= below <= 10_000_000:
        raise ValueError(f"below must be an int 0..10_000_000, not {below!r}")
    sieve = bytearray([1]) * below
    sieve[: min(below, 2)] = bytes(min(below, 2))
    for n in range(2, int(below**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, below, n)))
    return sum(sieve)


async def news_listener(task: Task, director: Task, role: str) -> None:
    task.set_daemon()
    while True:
        director.send(("news", role, await task.receive()))


async def peer_watch(task: Task, director: Task, role: str) -> None:
    task.set_daemon()
    while True:
        note = await task.receive()
        if isinstance(note, PeerStatus):
            state = "online" if note.status == PeerStatus.Online else "offline"
            director.send(("peer", role, note.name, state))


async def stdin_closed() -> None:
    """Returns when this process's standard input reaches its end."""
    if hasattr(trio.lowlevel, "FdStream"):
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stream:
            while await stream.receive_some():
                pass
    else:  # pragma: no cover - Windows has no FdStream
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


async def run(args: argparse.Namespace) -> None:
    alpha = Location(HOST, args.director_port)
    async with open_pycos(
        name=args.role,
        node=HOST,
        tcp_port=0,
        discover_peers=False,
        secret=os.environ.get(SECRET_ENV, ""),
        dest_path=args.dest_path,
    ) as pycos:
        with trio.move_on_after(args.lifetime):
            for port in [args.director_port, *args.peer]:
                if await pycos.peer(Location(HOST, port)) != 0:
                    raise SystemExit(f"{args.role}: cannot peer with {HOST}:{port}")
            director = await Task.locate("director", alpha, timeout=10)
            news = await Channel.locate("news", alpha, timeout=10)
            if director is None or news is None:
                raise SystemExit(f"{args.role}: alpha's director or news channel not found")
            pycos.peer_status(pycos.spawn(peer_watch, director, args.role))
            listener = pycos.spawn(news_listener, director, args.role)
            if await news.subscribe(listener, timeout=10) != 0:
                raise SystemExit(f"{args.role}: cannot subscribe to news")
            if args.role == "beta":
                pycos.spawn(greeter, director)
                if RPS(count_primes).register() != 0:
                    raise SystemExit("beta: cannot register count_primes")
            else:
                pycos.spawn(sleeper)
            # Registrations are done before the report: the director may use them
            # as soon as it reads it.
            director.send(("ready", args.role, pycos.location, os.getpid()))
            await stdin_closed()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m triopycos.cli.demo._worker")
    parser.add_argument("role", choices=["beta", "gamma"])
    parser.add_argument("director_port", type=int)
    parser.add_argument("--peer", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--dest-path")
    parser.add_argument("--lifetime", type=float, default=120.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    args = parse(argv)
    try:
        trio.run(run, args)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
