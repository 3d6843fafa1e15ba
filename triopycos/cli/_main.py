"""``main()``: parse the command line, run the command under ``trio.run``, and turn
what comes out of it into an exit code (see ``ExitCode``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import trio

from .._exception_groups import exception_leaves
from .._version import __version__
from ._demo import add_demo_parser
from ._exit import CommandFailed, ExitCode
from ._node_command import add_node_parser
from ._queries import add_query_parsers
from ._secret import add_secret_parser
from ._send_file import add_send_file_parser

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit codes: 0 done; 1 failed (refused, no answer, could not start); 2 bad
arguments or address; 3 peer unreachable; 4 handshake failed (wrong secret,
TLS mismatch); 130 interrupted.  Documentation: docs/cli.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triopycos",
        description="Run triopycos nodes and ask them questions.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"triopycos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_parser(commands)
    add_node_parser(commands)
    add_query_parsers(commands)
    add_send_file_parser(commands)
    add_secret_parser(commands)
    return parser


@contextlib.contextmanager
def _library_logging(level: int) -> Iterator[None]:
    """The library's log records at ``level`` and above go to stderr while the
    command runs.  Warnings are always recorded (the commands quote them in their
    error messages), whatever is shown."""
    logger = logging.getLogger("triopycos")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    saved = logger.level, logger.propagate
    logger.setLevel(min(level, logging.WARNING))
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _log_level(args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        return logging.INFO
    # A standalone node shows the library's warnings (refused handshakes and the
    # like); the other commands explain failures in their own words.
    return logging.WARNING if args.command == "node" else logging.ERROR


def _outcome(exc: BaseException) -> BaseException:
    """The exception that decides the exit code, out of any exception group."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = exception_leaves(exc)
        for kind in (KeyboardInterrupt, _Interrupted, CommandFailed, BrokenPipeError):
            for leaf in leaves:
                if isinstance(leaf, kind):
                    return leaf
    return exc


class _Interrupted(Exception):
    """Ctrl-C arrived while a command ran (it has been cancelled and cleaned up)."""


async def _run_command(args: argparse.Namespace) -> int:
    """Run the command; Ctrl-C cancels it.

    SIGINT is taken by a signal receiver rather than left to raise
    KeyboardInterrupt: trio would raise that wherever the program happens to be,
    even between two statements of the library's bookkeeping, and a node left half
    updated can hang instead of leaving.  A cancellation goes through every
    ``finally`` in order (the demo's workers are stopped and reaped).  ``node``
    handles its own signals: Ctrl-C is how it is stopped.
    """
    if args.command == "node":
        return int(await args.run(args, sys.stdout))
    interrupted = False
    code = ExitCode.FAILED
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def cancel_on_ctrl_c() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(cancel_on_ctrl_c)
            try:
                code = await args.run(args, sys.stdout)
            finally:
                nursery.cancel_scope.cancel()
    if interrupted:
        raise _Interrupted
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``triopycos ARGS``; the exit code."""
    args = build_parser().parse_args(argv)  # usage errors: SystemExit(2)
    with _library_logging(_log_level(args)):
        try:
            try:
                return int(trio.run(_run_command, args))
            except BaseExceptionGroup as group:
                raise _outcome(group) from None
        except CommandFailed as exc:
            sys.stdout.flush()
            print(f"triopycos {args.command}: error: {exc.message}", file=sys.stderr)
            return int(exc.code)
        except (KeyboardInterrupt, _Interrupted):
            sys.stdout.flush()
            print(f"triopycos {args.command}: interrupted", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
        except BrokenPipeError:
            # The reader of our output went away (`triopycos status ... | head`):
            # nothing more can be said, and Python must not try again at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return int(ExitCode.FAILED)
