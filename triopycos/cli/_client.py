"""The short-lived node behind ``peers``, ``status``, ``ping`` and ``send-file``.

A node only talks to nodes that share its secret, over the handshake, so the CLI
asks a question by starting a node of its own for the length of the command: on
127.0.0.1 (``--node`` to change that), on any free port, without discovery.  It
connects to the node it asks, and says goodbye when the command ends, so that node
sees a peer come and go (``triopycos node`` logs it).

``peer()`` answers only 0 or -1 (the spec's values); to tell the user *why*, the
CLI watches the node's ``handshakes_failed`` counter (a failed handshake means the
other side answered) and keeps the library's warnings of the attempt for the
message.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .. import Limits, Pycos, open_pycos
from ..values import Location, PycosError, ServiceError
from ._exit import CommandFailed, ExitCode
from ._options import (
    DEFAULT_NODE,
    add_secret_options,
    add_tls_options,
    parse_location,
    read_secret,
    resolve,
    tls_files,
)

__all__ = [
    "add_client_options",
    "open_client_node",
    "reach",
    "recorded_warnings",
    "target",
]


def add_client_options(parser: argparse.ArgumentParser) -> None:
    add_secret_options(parser)
    add_tls_options(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="bound on connecting, the handshake and each answer (default: 10)",
    )
    parser.add_argument(
        "--node",
        default=DEFAULT_NODE,
        metavar="ADDR",
        help=f"address for the CLI's own short-lived node (default: {DEFAULT_NODE})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the library's info")


async def target(text: str) -> Location:
    """The LOCATION argument, parsed and resolved."""
    return await resolve(*parse_location(text))


@contextlib.asynccontextmanager
async def open_client_node(args: argparse.Namespace) -> AsyncIterator[Pycos]:
    if not args.timeout > 0:
        raise CommandFailed(ExitCode.USAGE, f"--timeout must be > 0, not {args.timeout}")
    limits = Limits(connect_timeout=args.timeout, handshake_timeout=args.timeout)
    certfile, keyfile, cafile = tls_files(args)
    async with open_cli_node(
        "the CLI's node",
        name=f"triopycos-cli-{os.getpid()}",
        node=args.node,
        tcp_port=0,
        discover_peers=False,
        secret=read_secret(args),
        limits=limits,
        certfile=certfile,
        keyfile=keyfile,
        cafile=cafile,
    ) as pycos:
        yield pycos


@contextlib.asynccontextmanager
async def open_cli_node(what: str, **options: Any) -> AsyncIterator[Pycos]:
    """``open_pycos(**options)``, with a failure to start (not one later) as a
    ``CommandFailed`` that says so: bad options (``--node``, ``--cert``...) are a usage
    error, a service that cannot start (a port taken...) a failure."""
    started = False
    try:
        async with open_pycos(**options) as pycos:
            started = True
            yield pycos
    except (OSError, ssl.SSLError, ValueError, TypeError) as exc:
        if started:
            raise
        raise CommandFailed(ExitCode.USAGE, f"cannot start {what}: {exc}") from None
    except ServiceError as exc:
        if started:
            raise
        # The library's own sentence ("cannot listen on 127.0.0.1:9705: address
        # already in use") says it all; the service's name adds nothing here.
        cause = exc.__cause__
        why = cause if isinstance(cause, PycosError) else exc
        raise CommandFailed(ExitCode.FAILED, f"cannot start {what}: {why}") from None


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """The library's warnings while the block runs (they say why something failed)."""
    notes: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = logging.getLogger("triopycos")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield notes
    finally:
        logger.removeHandler(handler)


def last(notes: list[str], default: str) -> str:
    return notes[-1] if notes else default


async def reach(pycos: Pycos, location: Location) -> None:
    """Peer with ``location``, or fail with UNREACHABLE or AUTHENTICATION and why."""
    failed_before = pycos.statistics().handshakes_failed
    with recorded_warnings() as notes:
        if await pycos.peer(location) == 0:
            return
    why = last(notes, "no reason given")
    if pycos.statistics().handshakes_failed > failed_before:
        raise CommandFailed(
            ExitCode.AUTHENTICATION,
            f"{location} did not authenticate: {why}\n"
            "  (same --secret on both sides? TLS on both or neither, with certificates "
            "they trust? is it a triopycos node?)",
        )
    raise CommandFailed(ExitCode.UNREACHABLE, f"cannot reach {location}: {why}")
