"""``triopycos send-file LOCATION FILE [--dir D] [--overwrite]``: ``Pycos.send_file``
from the command line, with a progress bar on stderr and the outcome on stdout."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import Any, TextIO

import trio

from ._client import add_client_options, last, open_client_node, reach, recorded_warnings
from ._exit import CommandFailed, ExitCode
from ._options import DEFAULT_PORT, parse_location, resolve
from ._progress import ProgressBar, size_text

__all__ = ["add_send_file_parser"]


def add_send_file_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "send-file",
        help="send a file to a running node",
        description="Send FILE to the node at LOCATION, into its destination folder "
        "(and --dir under it).",
    )
    parser.add_argument(
        "location",
        metavar="LOCATION",
        help=f"HOST[:PORT] or [IPv6]:PORT (default port {DEFAULT_PORT})",
    )
    parser.add_argument("file", metavar="FILE", help="the file to send")
    parser.add_argument("--dir", metavar="D", help="a folder under the node's dest_path")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a different file of that name"
    )
    parser.add_argument("--no-progress", action="store_true", help="draw no progress bar")
    add_client_options(parser)
    parser.set_defaults(run=run_send_file)


async def run_send_file(args: argparse.Namespace, out: TextIO) -> int:
    host, port = parse_location(args.location)  # a typo is a usage error, first
    try:
        st = os.stat(args.file)
    except OSError as exc:
        raise CommandFailed(ExitCode.FAILED, f"cannot send {args.file!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CommandFailed(ExitCode.FAILED, f"cannot send {args.file!r}: not a regular file")
    location = await resolve(host, port)
    name = os.path.basename(args.file)
    where = f"{args.dir.rstrip('/')}/{name}" if args.dir else name
    async with open_client_node(args) as pycos:
        await reach(pycos, location)
        bar = None if args.no_progress else ProgressBar(sys.stderr, prefix=f"{name} ")
        started = trio.current_time()
        try:
            with recorded_warnings() as notes:
                result = await pycos.send_file(
                    location,
                    args.file,
                    dir=args.dir,
                    overwrite=args.overwrite,
                    timeout=args.timeout,
                    progress=bar,
                )
        finally:
            if bar is not None:
                bar.close()
        took = trio.current_time() - started
    if isinstance(result, os.stat_result):
        modified = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.st_mtime))
        raise CommandFailed(
            ExitCode.FAILED,
            f"{where} on {location} is a different file ({size_text(result.st_size)}, "
            f"modified {modified}): not replaced; --overwrite replaces it",
        )
    if result == 1:
        print(
            f"{where} is already on {location} (same size, time and permissions): nothing sent",
            file=out,
        )
        return ExitCode.OK
    if result == 0:
        rate = st.st_size / took if took > 0 else 0.0
        print(
            f"sent {name} ({size_text(st.st_size)}) to {location} as {where} in "
            f"{took:.2f} s ({size_text(rate)}/s)",
            file=out,
        )
        return ExitCode.OK
    raise CommandFailed(
        ExitCode.FAILED, f"sending {name} to {location} failed: {last(notes, 'no reason given')}"
    )
