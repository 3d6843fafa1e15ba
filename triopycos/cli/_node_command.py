"""``triopycos node``: a standalone node that runs until Ctrl-C (or SIGTERM).

It serves whatever peers ask of it (locating, messages, status, files into
``--dest-path``) and logs, one line each, when it starts, when peers come online
and go offline, and when it stops.  Ctrl-C leaves cleanly: peers are told goodbye,
so they see it go Offline at once, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import time
from typing import Any, TextIO

import trio

from .. import Pycos
from .._task import Task
from ..values import PeerStatus
from ._client import last, open_cli_node, recorded_warnings
from ._exit import CommandFailed, ExitCode
from ._options import (
    DEFAULT_NODE,
    DEFAULT_PORT,
    add_secret_options,
    add_tls_options,
    parse_location,
    parse_size,
    read_secret,
    resolve,
    tls_files,
)

__all__ = ["add_node_parser"]


def add_node_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "node",
        help="run a node until Ctrl-C",
        description="Run a standalone node until Ctrl-C (or SIGTERM), logging peers "
        "as they come online and go offline.",
    )
    parser.add_argument("--name", help="the node's name (default: its address)")
    parser.add_argument(
        "--node",
        action="append",
        metavar="ADDR",
        help=f"address to serve on; repeat for several (default: {DEFAULT_NODE}, "
        "this machine only)",
    )
    parser.add_argument(
        "--tcp-port",
        type=int,
        metavar="PORT",
        help=f"TCP port (default: {DEFAULT_PORT} if free, else any; 0: any)",
    )
    parser.add_argument(
        "--udp-port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"UDP port for discovery (default: {DEFAULT_PORT})",
    )
    add_secret_options(parser)
    add_tls_options(parser)
    parser.add_argument("--dest-path", metavar="DIR", help="where received files go")
    parser.add_argument(
        "--max-file-size",
        metavar="SIZE",
        help="largest file accepted, e.g. 100M (default: no limit)",
    )
    parser.add_argument(
        "--discover",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="find peers by UDP broadcast/multicast on the node's network (default: "
        "off; --no-discover says so explicitly)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="peer with the node there at start; repeat for several",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the library's info")
    parser.set_defaults(run=run_node)


def _is_loopback(node: str) -> bool:
    try:
        return ipaddress.ip_address(node).is_loopback
    except ValueError:
        return node == "localhost"


def _clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


class _Log:
    """One timestamped line per event on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str) -> None:
        print(_clock(), text, file=self.out, flush=True)


async def _report_peers(task: Task, log: _Log) -> None:
    task.set_daemon()
    while True:
        note = await task.receive()
        if isinstance(note, PeerStatus):
            state = "online" if note.status == PeerStatus.Online else "offline"
            log(f"peer {note.name!r} at {note.location} {state}")


async def _peer_with(pycos: Pycos, wanted: list[tuple[str, int]], log: _Log) -> None:
    """Peer with each --peer once; a failure is logged, not fatal (that node may
    start later and peer with us)."""
    for host, port in wanted:
        try:
            location = await resolve(host, port)
        except CommandFailed as exc:
            log(f"cannot peer with {host}:{port}: {exc.message}")
            continue
        failed_before = pycos.statistics().handshakes_failed
        with recorded_warnings() as notes:
            if await pycos.peer(location) == 0:
                continue
        refused = pycos.statistics().handshakes_failed > failed_before
        what = "did not authenticate" if refused else "cannot be reached"
        log(f"cannot peer with {location}: it {what}: {last(notes, 'no reason given')}")


def _describe(pycos: Pycos, secret: str, args: argparse.Namespace) -> str:
    limit = "no limit" if pycos.max_file_size is None else f"at most {pycos.max_file_size} bytes"
    return (
        f"secret: {'set' if secret else 'none (any node can connect)'}; "
        f"TLS: {'on' if args.cert else 'off'}; "
        f"discovery: {'on' if args.discover else 'off'}; "
        f"files go to {pycos.dest_path} ({limit})"
    )


async def run_node(args: argparse.Namespace, out: TextIO) -> int:
    # Everything the user typed is checked before anything starts.
    secret = read_secret(args)
    certfile, keyfile, cafile = tls_files(args)
    max_file_size = None if args.max_file_size is None else parse_size(args.max_file_size)
    wanted = [parse_location(text) for text in args.peer]
    for what, port in (("--tcp-port", args.tcp_port), ("--udp-port", args.udp_port)):
        if port is not None and not 0 <= port <= 65535:
            raise CommandFailed(ExitCode.USAGE, f"{what} must be 0..65535, not {port}")
    nodes = args.node or [DEFAULT_NODE]
    if args.discover and all(_is_loopback(node) for node in nodes):
        # Broadcast and multicast do not work from a loopback address: say so rather
        # than announce into nothing (or, worse, out of some other interface).
        raise CommandFailed(
            ExitCode.USAGE, "--discover needs --node with an address on the network to search"
        )
    log = _Log(out)
    # Signals are caught from before the node starts, so Ctrl-C at any moment ends
    # in the same clean exit.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_cli_node(
            "the node",
            name=args.name,
            node=nodes,
            tcp_port=args.tcp_port,
            udp_port=args.udp_port,
            discover_peers=args.discover,
            secret=secret,
            certfile=certfile,
            keyfile=keyfile,
            cafile=cafile,
            dest_path=args.dest_path,
            max_file_size=max_file_size,
        ) as pycos:
            here = await pycos.status()
            assert here is not None  # this node's own status needs no network
            serving = ", ".join(str(loc) for loc in here.locations)
            log(f"node {pycos.name!r} serving at {serving}")
            log(_describe(pycos, secret, args))
            pycos.peer_status(pycos.spawn(_report_peers, log))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_peer_with, pycos, wanted, log)
                async for signum in signals:
                    log(f"stopping ({signal.Signals(signum).name})")
                    nursery.cancel_scope.cancel()
                    break
    log("stopped")
    return ExitCode.OK
