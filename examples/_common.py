"""Command-line plumbing shared by the network examples (not an example itself).

Every network example takes:

* ``--node ADDRESS``: the address its node listens on (default 127.0.0.1);
* ``--secret TEXT``: the shared secret every node of the example must use;
* ``--name NAME``: the node's name;
* servers: ``--port PORT``, a fixed default so the documented commands work as they
  are (``--port 0`` takes any free port; the server prints the one it got);
* clients: ``--peer HOST:PORT``, the server to peer with (``[::1]:PORT`` for IPv6).

Nothing is found by discovery: every node runs with ``discover_peers=False`` and
peers explicitly, so the examples send traffic only where they are told.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

from triopycos import Location, MonitorStatus, PeerLost, Pycos, Task, open_pycos

__all__ = [
    "DEFAULT_NODE",
    "DEFAULT_SECRET",
    "client_parser",
    "describe_status",
    "parse_location",
    "peered_node",
    "run",
    "serve_until_stopped",
    "server_parser",
]

DEFAULT_NODE = "127.0.0.1"
DEFAULT_SECRET = "triopycos-examples"


def parse_location(text: str) -> Location:
    """``HOST:PORT`` (or ``[IPV6]:PORT``) as a ``Location``; HOST must be an IP address."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not sep or not 0 < number < 65536:
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT with a numeric HOST, e.g. 127.0.0.1:9711 or [::1]:9711"
        ) from None
    return Location(host, number)


def _parser(doc: str | None, name: str | None) -> argparse.ArgumentParser:
    summary, _, details = (doc or "").partition("\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--node",
        default=DEFAULT_NODE,
        metavar="ADDRESS",
        help="address this node listens on (default: %(default)s)",
    )
    parser.add_argument(
        "--secret",
        default=DEFAULT_SECRET,
        help="shared secret; every node of the example needs the same (default: %(default)s)",
    )
    default_name = "%(default)s" if name is not None else "its location, HOST:PORT"
    parser.add_argument("--name", default=name, help=f"this node's name (default: {default_name})")
    return parser


def server_parser(doc: str | None, *, name: str | None, port: int) -> argparse.ArgumentParser:
    """A parser with the common options and ``--port`` (default ``port``)."""
    parser = _parser(doc, name)
    parser.add_argument(
        "--port",
        type=int,
        default=port,
        help="TCP port to listen on; 0 picks a free one (default: %(default)s)",
    )
    return parser


def client_parser(
    doc: str | None, *, peer_port: int, name: str | None = None
) -> argparse.ArgumentParser:
    """A parser with the common options, ``--peer`` (default 127.0.0.1:``peer_port``)
    and ``--timeout``; the client's own node listens on any free port."""
    parser = _parser(doc, name)
    parser.add_argument(
        "--peer",
        type=parse_location,
        default=Location(DEFAULT_NODE, peer_port),
        metavar="HOST:PORT",
        help="the server's node (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for each answer (default: %(default)s)",
    )
    return parser


def run(
    main: Callable[[argparse.Namespace], Awaitable[int]], parser: argparse.ArgumentParser
) -> NoReturn:
    """Parse the command line, run ``main(args)`` under trio, exit with its status."""
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(trio.run(main, args))


@asynccontextmanager
async def peered_node(args: argparse.Namespace) -> AsyncIterator[Pycos | None]:
    """A client's node (any free port), peered with ``args.peer``; None (after
    saying why) if the peer cannot be reached."""
    async with open_pycos(
        name=args.name, node=args.node, tcp_port=0, secret=args.secret, discover_peers=False
    ) as pycos:
        if await pycos.peer(args.peer) != 0:
            print(f"could not peer with {args.peer} (not running? another --secret?)", flush=True)
            yield None
            return
        print(f"peered with {args.peer}", flush=True)
        yield pycos


async def serve_until_stopped(pycos: Pycos, *tasks: Task) -> None:
    """Print ``ready HOST PORT``, then wait until every task in ``tasks`` has ended.

    On Ctrl-C (SIGINT) or SIGTERM it prints ``stopping on SIGNAL`` and terminates
    them.  Either way the caller then leaves its ``open_pycos`` block, which says
    goodbye to the peers: they see this node go Offline at once.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        print("ready", pycos.location.addr, pycos.location.port, flush=True)

        async def stop_on_signal() -> None:
            async for signum in signals:
                print(f"stopping on {signal.Signals(signum).name}", flush=True)
                for task in tasks:
                    task.terminate()
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal)
            for task in tasks:
                await task.finish()
            nursery.cancel_scope.cancel()


def describe_status(status: MonitorStatus) -> str:
    """How a task ended, in a few words, from its ``MonitorStatus``."""
    if status.type is StopIteration:
        return f"returned {status.value!r}"
    if status.type is GeneratorExit:
        return "was terminated"
    if status.type is PeerLost:
        return f"was lost: {status.value}"
    # An exception: ``value`` is the traceback text, whose last line names it.
    lines = [line for line in str(status.value).splitlines() if line.strip()]
    name = getattr(status.type, "__name__", repr(status.type))
    return f"raised {lines[-1] if lines else name}"
