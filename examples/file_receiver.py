"""File transfer, receiving side: a node that keeps what peers send under a folder.

Run, in two terminals:

    python examples/file_receiver.py --dest /tmp/triopycos-received
    python examples/file_sender.py --peer 127.0.0.1:9715 --dir demo --stop README.md

The receiver needs no code for it: any node with the same secret may ``send_file``
into this node's ``dest_path`` (``--dest``; files over ``--max-file-size`` bytes are
refused) and ``del_file`` what it sent. Its task "file_receiver" only keeps the node
serving until it receives "stop" (``file_sender.py --stop`` sends it); Ctrl-C or
SIGTERM stops it too. It then lists the files left under ``--dest``.

Prints ``ready HOST PORT`` once serving, and at the end ``files received: N``,
``kept PATH (N bytes)`` per file under ``--dest`` and ``receiver stopped``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio
from _common import run, serve_until_stopped, server_parser

from triopycos import Task, open_pycos

PORT = 9715


async def file_receiver(task: Task) -> None:
    """Keeps the node serving until it receives "stop"."""
    if task.register("file_receiver") != 0:
        raise RuntimeError('another task is registered as "file_receiver" on this node')
    while await task.receive() != "stop":
        pass


def files_under(folder: Path) -> list[tuple[str, int]]:
    """The files under ``folder`` (made when the first file arrives): paths and sizes."""
    if not folder.is_dir():
        return []
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return [(path.relative_to(folder).as_posix(), path.stat().st_size) for path in files]


async def main(args: argparse.Namespace) -> int:
    dest: Path = args.dest
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
        dest_path=dest,
        max_file_size=args.max_file_size,
    ) as pycos:
        print(f"saving files under {dest}", flush=True)
        keep = pycos.spawn(file_receiver)
        await serve_until_stopped(pycos, keep)
        print(f"files received: {pycos.statistics().files_received}", flush=True)
    for name, size in await trio.to_thread.run_sync(files_under, dest):
        print(f"kept {name} ({size} bytes)", flush=True)
    print("receiver stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    parser = server_parser(__doc__, name="file-receiver", port=PORT)
    parser.add_argument(
        "--dest",
        type=lambda text: Path(text).resolve(),
        required=True,
        help="folder to keep received files in (made if missing)",
    )
    parser.add_argument(
        "--max-file-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="refuse files larger than this (default: no limit)",
    )
    return parser


if __name__ == "__main__":
    run(main, parser())
