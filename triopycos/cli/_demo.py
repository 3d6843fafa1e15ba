"""``triopycos demo``: the command around ``triopycos.cli.demo``."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from ._exit import CommandFailed, ExitCode
from .demo import DemoFailed, run_demo

__all__ = ["add_demo_parser"]


def add_demo_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="three nodes on this machine, narrated",
        description="Start three nodes on 127.0.0.1, each in its own process, and show "
        "what they do: peering, messages, deliver, monitor and terminate, a channel, "
        "an RPS, a file transfer, a node killed.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up after this long (default: 60)",
    )
    parser.set_defaults(run=run_demo_command)


async def run_demo_command(args: argparse.Namespace, out: TextIO) -> int:
    if not args.timeout > 0:
        raise CommandFailed(ExitCode.USAGE, f"--timeout must be > 0, not {args.timeout}")
    try:
        await run_demo(out, args.timeout)
    except DemoFailed as exc:
        raise CommandFailed(ExitCode.FAILED, f"the demo failed: {exc}") from None
    return ExitCode.OK
