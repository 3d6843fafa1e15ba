"""A node with discovery, for the network-namespace tests (started only through
tests/procs.py, inside a namespace the test created).

    python tests/discovery_program.py NAME [--multicast] [--ipv6] [--ext IP]
        [--peer HOST [--peer-port P]] [--relay] [--tcp-port P] [--secret S] [--quiet]

Serves on $TRIOPYCOS_TEST_NODE with discover_peers=True (unless --quiet), prints
``ready HOST PORT`` once serving, then ``online NAME HOST PORT`` and ``offline NAME``
as peers come and go.  ``--peer`` calls ``peer()`` once started (port 0 unless
``--peer-port``; ``--relay`` passes relay=True) and prints ``peer RESULT``.
Registers a task ``echo`` that answers ``(sender, x)`` with ``x``.  ``--stats`` prints
``stats RECEIVED DROPPED`` (discovery datagrams) when they change.  Runs until killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

import trio

from triopycos import Location, PeerStatus, Task, open_pycos


async def echo(task: Task) -> None:
    task.register("echo")
    while True:
        sender, value = await task.receive()
        sender.send(value)


async def watch(task: Task) -> None:
    while True:
        status = await task.receive()
        if status.status == PeerStatus.Online:
            loc = status.location
            print("online", status.name, loc.addr, loc.port, flush=True)
        else:
            print("offline", status.name, flush=True)


async def report(task: Task, pycos: Any) -> None:
    """Print ``stats RECEIVED DROPPED`` whenever the datagram counters change."""
    task.set_daemon()
    last = None
    while True:
        stats = pycos.statistics()
        now = (stats.datagrams_received, stats.datagrams_dropped)
        if now != last:
            print("stats", *now, flush=True)
            last = now
        await trio.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--multicast", action="store_true")
    parser.add_argument("--ipv6", action="store_true")
    parser.add_argument("--ext")
    parser.add_argument("--peer")
    parser.add_argument("--peer-port", type=int, default=0)
    parser.add_argument("--relay", action="store_true")
    parser.add_argument("--tcp-port", type=int)
    parser.add_argument("--secret", default="netns secret")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--stats", action="store_true")
    args = parser.parse_args()
    async with open_pycos(
        name=args.name,
        node=os.environ["TRIOPYCOS_TEST_NODE"],
        tcp_port=args.tcp_port,
        ipv4_udp_multicast=args.multicast,
        socket_family=socket.AF_INET6 if args.ipv6 else None,
        ext_ip_addr=args.ext,
        discover_peers=not args.quiet,
        secret=args.secret,
    ) as pycos:
        pycos.peer_status(pycos.spawn(watch))
        pycos.spawn(echo)
        print("ready", pycos.location.addr, pycos.location.port, flush=True)
        if args.stats:
            pycos.spawn(report, pycos)
        if args.peer:
            target = Location(args.peer, args.peer_port)
            print("peer", await pycos.peer(target, relay=args.relay), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main)
