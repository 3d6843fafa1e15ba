"""Options shared by the commands, and the parsers of their values (addresses, sizes,
secrets).  Parsers raise ``CommandFailed(USAGE, ...)`` with a message that names the
bad value, so every command reports bad input the same way (exit 2)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket

import trio

from ..values import Location
from ._exit import CommandFailed, ExitCode

__all__ = [
    "DEFAULT_NODE",
    "DEFAULT_PORT",
    "SECRET_ENV",
    "add_secret_options",
    "add_tls_options",
    "parse_location",
    "parse_size",
    "read_secret",
    "resolve",
    "tls_files",
]

#: The port a node takes when it is free (the spec's) and a LOCATION's default port.
DEFAULT_PORT = 9705
#: Where the CLI's nodes listen unless told otherwise: this machine only.  A node
#: that should be reachable from elsewhere must be given its address on purpose.
DEFAULT_NODE = "127.0.0.1"
#: The secret, when neither --secret nor --secret-file is given (keeps it out of the
#: command line, which other users of the machine can see).
SECRET_ENV = "TRIOPYCOS_SECRET"

_HOST = re.compile(r"[A-Za-z0-9._-]+")
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_location(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, ``[IPv6]`` or a bare IPv6 address,
    as (host, port).  The host is not resolved here (see ``resolve``)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise _bad_address(text, "an IPv6 address goes in brackets: [::1]:9705")
        host, port_text = text[1:end], text[end + 2 :]
        if not _is_ip(host, 6):
            raise _bad_address(text, f"{host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1 and not _is_ip(text, 6):
        raise _bad_address(text, "not an IPv6 address (write a port as [addr]:port)")
    if not host:
        raise _bad_address(text, "no host")
    if ":" not in host and not _HOST.fullmatch(host):
        raise _bad_address(text, f"{host!r} is not a host name or address")
    if port_text == "" and text.endswith(":"):
        raise _bad_address(text, "no port after ':'")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise _bad_address(text, f"port {port_text!r} is not a number 1..65535")
        port = int(port_text)
    return host, port


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _bad_address(text: str, why: str) -> CommandFailed:
    return CommandFailed(ExitCode.USAGE, f"bad address {text!r}: {why}")


async def resolve(host: str, port: int) -> Location:
    """The ``Location`` of ``host:port`` with a numeric address.  Peers name
    themselves by address, so a name is resolved once here (the first address,
    as ``getaddrinfo`` orders them)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return Location(host, port)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CommandFailed(ExitCode.UNREACHABLE, f"cannot resolve {host!r}: {exc}") from None
    return Location(str(infos[0][4][0]), port)


def parse_size(text: str) -> int:
    """Bytes: ``1000``, ``64K``, ``10M``, ``2G``, ``1T`` (powers of 1024; ``KiB``,
    ``MB`` and the like also read so).  0 means no limit where a limit is meant."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise CommandFailed(ExitCode.USAGE, f"bad size {text!r}: write e.g. 1000, 64K, 10M, 2G")
    return int(match[1]) * _UNITS[match[2].lower()]


def add_secret_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--secret",
        help=f"the shared secret (default: ${SECRET_ENV}, else none)",
    )
    group.add_argument(
        "--secret-file",
        metavar="FILE",
        help="read the shared secret from FILE (its first line)",
    )


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cert", metavar="FILE", help="TLS certificate (PEM); turns TLS on")
    parser.add_argument("--key", metavar="FILE", help="TLS private key, if not in --cert")
    parser.add_argument(
        "--ca", metavar="FILE", help="certificates to trust (default: --cert itself)"
    )


def read_secret(args: argparse.Namespace) -> str:
    """The secret from --secret, --secret-file or the environment."""
    if args.secret_file is not None:
        try:
            with open(args.secret_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandFailed(ExitCode.USAGE, f"cannot read the secret file: {exc}") from None
    if args.secret is not None:
        return str(args.secret)
    return os.environ.get(SECRET_ENV, "")


def tls_files(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """open_pycos's ``certfile``, ``keyfile`` and ``cafile`` from --cert, --key, --ca."""
    if args.cert is None and (args.key is not None or args.ca is not None):
        raise CommandFailed(ExitCode.USAGE, "--key and --ca need --cert")
    return args.cert, args.key, args.ca
