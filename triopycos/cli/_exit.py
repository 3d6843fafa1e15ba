"""Exit codes of every command, and the error that carries one out of a command."""

from __future__ import annotations

import enum

__all__ = ["CommandFailed", "ExitCode"]


class ExitCode(enum.IntEnum):
    """What ``triopycos`` exits with (documented in docs/cli.md)."""

    OK = 0
    #: The operation failed: the node could not start, the file was refused, the
    #: peer gave no answer, a demo step went wrong.
    FAILED = 1
    #: Bad arguments: an unknown option, a malformed address or size, an unreadable
    #: secret or certificate file.
    USAGE = 2
    #: The peer cannot be reached: its name does not resolve, nothing listens there,
    #: or connecting timed out.
    UNREACHABLE = 3
    #: The peer answered but the handshake failed: wrong secret, TLS on one side
    #: only or certificates that do not match, or not a triopycos node.
    AUTHENTICATION = 4
    #: Stopped by Ctrl-C (SIGINT), as shells report it (128 + 2).  ``node`` is
    #: stopped that way on purpose and exits 0 instead.
    INTERRUPTED = 130


class CommandFailed(Exception):
    """Ends a command with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
