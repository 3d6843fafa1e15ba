"""``triopycos secret [--file F]``: print (or save) a strong random secret.

256 random bits: far beyond any offline guessing, whatever a captured handshake
lets an attacker try (docs/security.md).  ``--file`` creates the file readable by
its owner alone, ready for ``--secret-file``; it never replaces an existing one.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from ..protocol.auth import new_secret
from ._exit import CommandFailed, ExitCode

__all__ = ["add_secret_parser"]


def add_secret_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "secret",
        help="print a strong random secret",
        description="Print a random secret (256 bits) for --secret-file or "
        "$TRIOPYCOS_SECRET, or save it in a new file only you can read.",
    )
    parser.add_argument(
        "--file", metavar="F", help="write it to F (created with mode 0600; never replaced)"
    )
    parser.set_defaults(run=run_secret)


async def run_secret(args: argparse.Namespace, out: TextIO) -> int:
    secret = new_secret()
    if args.file is None:
        print(secret, file=out)
        return int(ExitCode.OK)
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CommandFailed(
            ExitCode.FAILED, f"cannot create {args.file!r}: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    print(f"a new secret is in {args.file} (readable by you alone)", file=out)
    return int(ExitCode.OK)
