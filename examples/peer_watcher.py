"""Peer status: a node that prints other nodes coming online and going offline.

Run, in two terminals (then stop the second with Ctrl-C, and start it again):

    python examples/peer_watcher.py --name first
    python examples/peer_watcher.py --name second --port 0 --peer 127.0.0.1:9714

Each watcher hands a task of its own to ``pycos.peer_status(task)``; that task then
receives a ``PeerStatus`` message for every peer already connected and for every
peer coming online or going offline later. ``--peer`` (repeatable) connects to other
nodes; only one side of a pair needs to. A node that leaves normally (Ctrl-C or
SIGTERM here) says goodbye, so its peers see it go offline at once; a node that is
killed is seen offline as soon as its connection closes, or after the peer timeout
if it freezes.

Prints ``ready HOST PORT`` once serving (after peering), ``online NAME HOST:PORT``
and ``offline NAME HOST:PORT`` as peers come and go, and ``watcher stopped`` at the end.
"""

from __future__ import annotations

import argparse

from _common import parse_location, run, serve_until_stopped, server_parser

from triopycos import PeerStatus, Task, open_pycos

PORT = 9714


async def watcher(task: Task) -> None:
    """Prints each ``PeerStatus`` it receives; runs until terminated."""
    while True:
        status = await task.receive()
        if isinstance(status, PeerStatus):
            state = "online" if status.status == PeerStatus.Online else "offline"
            print(f"{state} {status.name} {status.location}", flush=True)


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
    ) as pycos:
        watch = pycos.spawn(watcher)
        pycos.peer_status(watch)
        failed = 0
        for where in args.peer:
            if await pycos.peer(where) != 0:
                print(f"could not peer with {where} (not running? another --secret?)", flush=True)
                failed += 1
        if failed:
            watch.terminate()
            return 1
        await serve_until_stopped(pycos, watch)
    print("watcher stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    parser = server_parser(__doc__, name=None, port=PORT)
    parser.add_argument(
        "--peer",
        type=parse_location,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a node to connect to (repeatable)",
    )
    return parser


if __name__ == "__main__":
    run(main, parser())
