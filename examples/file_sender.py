"""File transfer, sending side: send files to another node, and delete one there.

Run, in two terminals:

    python examples/file_receiver.py --dest /tmp/triopycos-received
    python examples/file_sender.py --peer 127.0.0.1:9715 --dir demo --stop README.md

For each FILE, ``pycos.send_file(location, FILE, dir=DIR, overwrite=...)`` puts it in
the receiver's ``dest_path`` (under ``--dir``) and returns:

* 0: sent and saved;
* 1: the same file (size, modification time, permissions) is there already;
  nothing was sent;
* an ``os.stat_result``: a different file of that name is there, and ``--overwrite``
  was not given (so it was left alone);
* -1: failed (unreadable here, refused there, unreachable...).

Then ``--delete NAME`` (repeatable) removes a file sent earlier to the same ``--dir``
with ``pycos.del_file`` (0, or -1), and ``--stop`` tells the receiver to stop.
Run it twice to see 1 for unchanged files, and change a file in between to see
its ``os.stat_result``.

Prints ``send_file NAME: CODE (meaning)`` per file, ``del_file NAME: CODE`` per
deletion. Exits with 0, or 1 if any operation returned -1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import client_parser, peered_node, run

from triopycos import Task

PORT = 9715


def describe(result: int | os.stat_result) -> str:
    """``send_file``'s return value, with what it means."""
    if isinstance(result, os.stat_result):
        return (
            f"os.stat_result (a different {result.st_size}-byte file is there; "
            "--overwrite replaces it)"
        )
    meaning = {0: "sent", 1: "the same file is there already", -1: "failed"}
    return f"{result} ({meaning.get(result, 'unexpected')})"


async def main(args: argparse.Namespace) -> int:
    failed = 0
    # send_file and del_file open their own connections; peering first checks that
    # the receiver is there and shares our secret, and lets us message it below.
    async with peered_node(args) as pycos:
        if pycos is None:
            return 1
        for file in args.files:
            result = await pycos.send_file(
                args.peer, file, dir=args.dir, overwrite=args.overwrite, timeout=args.timeout
            )
            print(f"send_file {Path(file).name}: {describe(result)}", flush=True)
            failed += result == -1

        for name in args.delete:
            result = await pycos.del_file(args.peer, name, dir=args.dir, timeout=args.timeout)
            print(f"del_file {name}: {result}", flush=True)
            failed += result == -1

        if args.stop:
            receiver = await Task.locate("file_receiver", args.peer, timeout=args.timeout)
            if receiver is None or await receiver.deliver("stop", timeout=args.timeout) != 1:
                print("could not stop the receiver", flush=True)
                return 1
            print("asked the receiver to stop", flush=True)
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    parser = client_parser(__doc__, peer_port=PORT)
    parser.add_argument("files", nargs="*", metavar="FILE", help="files to send")
    parser.add_argument("--dir", default=None, help="folder under the receiver's dest_path")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace different files of the same name"
    )
    parser.add_argument(
        "--delete",
        action="append",
        default=[],
        metavar="NAME",
        help="delete this file (sent earlier to the same --dir) at the receiver; repeatable",
    )
    parser.add_argument("--stop", action="store_true", help="stop the receiver at the end")
    return parser


if __name__ == "__main__":
    run(main, parser())
