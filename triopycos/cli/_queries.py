"""``triopycos peers``, ``status`` and ``ping``: questions to one running node.

Each starts the CLI's short-lived node (``_client.py``), connects to LOCATION and
asks: ``status`` and ``peers`` with ``Pycos.status()``, ``ping`` with
``Pycos.ping()``.  The CLI's own node is a peer of the node it asks while it asks;
``peers`` and ``status`` leave it out of the peers they show (its connection still
counts in the node's statistics).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, TextIO

import trio

from .._node_status import NodeStatus, PeerInfo
from ._client import add_client_options, open_client_node, reach, target
from ._exit import CommandFailed, ExitCode
from ._options import DEFAULT_NODE, DEFAULT_PORT

__all__ = ["add_query_parsers"]

_LOCATION_HELP = f"the node to ask: HOST[:PORT] or [IPv6]:PORT (default port {DEFAULT_PORT})"


def add_query_parsers(commands: Any) -> None:
    peers = commands.add_parser(
        "peers",
        help="list the peers of a running node",
        description="List the nodes a running node is connected to.",
    )
    peers.add_argument(
        "location",
        nargs="?",
        default=f"{DEFAULT_NODE}:{DEFAULT_PORT}",
        metavar="LOCATION",
        help=_LOCATION_HELP + f" (default: {DEFAULT_NODE}:{DEFAULT_PORT})",
    )
    peers.add_argument("--json", action="store_true", help="print JSON")
    add_client_options(peers)
    peers.set_defaults(run=run_peers)

    status = commands.add_parser(
        "status",
        help="show what a running node has and knows",
        description="Show a node's name, addresses, registered tasks, channels and "
        "RPSs, connected peers and statistics.",
    )
    status.add_argument("location", metavar="LOCATION", help=_LOCATION_HELP)
    status.add_argument("--json", action="store_true", help="print JSON")
    add_client_options(status)
    status.set_defaults(run=run_status)

    ping = commands.add_parser(
        "ping",
        help="measure round trips to a running node",
        description="Connect to a node, then time requests to it and their replies.",
    )
    ping.add_argument("location", metavar="LOCATION", help=_LOCATION_HELP)
    ping.add_argument("-c", "--count", type=int, default=4, help="round trips to time (default: 4)")
    ping.add_argument(
        "-i",
        "--interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="pause between round trips (default: 0.5)",
    )
    add_client_options(ping)
    ping.set_defaults(run=run_ping)


async def _ask_status(args: argparse.Namespace) -> NodeStatus:
    """The status of LOCATION, its peers without the CLI's own node."""
    location = await target(args.location)
    async with open_client_node(args) as pycos:
        await reach(pycos, location)
        status = await pycos.status(location, timeout=args.timeout)
        if status is None:
            raise CommandFailed(ExitCode.FAILED, f"{location} gave no status (it went away?)")
        others = tuple(p for p in status.peers if p.location != pycos.location)
        return dataclasses.replace(status, peers=others)


def _peer_lines(peers: tuple[PeerInfo, ...]) -> list[str]:
    width = max((len(p.name) for p in peers), default=0)
    return [f"  {p.name:<{width}}  {p.location}" for p in peers]


async def run_peers(args: argparse.Namespace, out: TextIO) -> int:
    status = await _ask_status(args)
    peers = status.peers
    if args.json:
        shown = status.as_json()
        json.dump(
            {"name": shown["name"], "location": shown["location"], "peers": shown["peers"]},
            out,
            indent=2,
        )
        out.write("\n")
        return ExitCode.OK
    count = f"{len(peers)} peer{'' if len(peers) == 1 else 's'}"
    print(f"node {status.name!r} at {status.location} has {count}", file=out)
    for line in _peer_lines(peers):
        print(line, file=out)
    return ExitCode.OK


def _names(what: str, names: tuple[str, ...]) -> str:
    return f"{what} ({len(names)}): {', '.join(names) if names else '-'}"


async def run_status(args: argparse.Namespace, out: TextIO) -> int:
    status = await _ask_status(args)
    peers = status.peers
    if args.json:
        json.dump(status.as_json(), out, indent=2)
        out.write("\n")
        return ExitCode.OK
    lines = [f"node {status.name!r} at {status.location} (triopycos {status.version})"]
    if len(status.locations) > 1:
        lines.append("also at: " + ", ".join(str(loc) for loc in status.locations[1:]))
    lines.append(_names("tasks", status.tasks))
    lines.append(_names("channels", status.channels))
    lines.append(_names("RPSs", status.rps))
    lines.append(f"peers ({len(peers)}):" + ("" if peers else " -"))
    lines.extend(_peer_lines(peers))
    lines.append("statistics:")
    counters = dataclasses.asdict(status.statistics)
    width = max(len(name) for name in counters)
    lines.extend(f"  {name:<{width}}  {value}" for name, value in counters.items())
    print("\n".join(lines), file=out)
    return ExitCode.OK


async def run_ping(args: argparse.Namespace, out: TextIO) -> int:
    if args.count < 1:
        raise CommandFailed(ExitCode.USAGE, f"--count must be at least 1, not {args.count}")
    if not args.interval >= 0:
        raise CommandFailed(ExitCode.USAGE, f"--interval must be >= 0, not {args.interval}")
    location = await target(args.location)
    async with open_client_node(args) as pycos:
        start = trio.current_time()
        await reach(pycos, location)
        connected = trio.current_time() - start
        status = await pycos.status(location, timeout=args.timeout)
        name = repr(status.name) if status is not None else "?"
        print(
            f"node {name} at {location}: connected and authenticated in {connected * 1000:.2f} ms",
            file=out,
            flush=True,
        )
        times: list[float] = []
        for n in range(1, args.count + 1):
            if n > 1:
                await trio.sleep(args.interval)
            rtt = await pycos.ping(location, timeout=args.timeout)
            if rtt is None:
                print(f"round trip {n}: no answer", file=out, flush=True)
            else:
                times.append(rtt)
                print(f"round trip {n}: {rtt * 1000:.3f} ms", file=out, flush=True)
    lost = args.count - len(times)
    summary = f"{args.count} sent, {len(times)} answered"
    if times:
        low, mean, high = min(times), sum(times) / len(times), max(times)
        summary += f"; min/avg/max {low * 1000:.3f}/{mean * 1000:.3f}/{high * 1000:.3f} ms"
    print(summary, file=out)
    return ExitCode.OK if lost == 0 else ExitCode.FAILED
