"""Small shared pieces of the virtual network: link settings, the event record and
address helpers."""

from __future__ import annotations

import ipaddress
import math
import socket
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["LinkConfig", "NetEvent"]

# Wildcard addresses a listener or a UDP socket may bind to.  "" means both families
# (like trio.open_tcp_listeners(port, host=None)); the others mean one family.
WILDCARD_V4 = "0.0.0.0"
WILDCARD_V6 = "::"


@dataclass(frozen=True)
class LinkConfig:
    """How one direction of the link between two virtual hosts behaves.

    ``latency`` and ``jitter`` are seconds: each segment or datagram takes
    ``latency + uniform(0, jitter)`` (jitter drawn from the network's seeded RNG; a
    stream never reorders, so a segment may wait behind a slower one).  ``bandwidth``
    is bytes per second (``None``: unlimited).  ``loss`` and ``duplication`` are the
    probabilities that a datagram is dropped or delivered twice; streams are reliable
    and ignore them.
    """

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None
    loss: float = 0.0
    duplication: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        if self.bandwidth is not None and (
            not isinstance(self.bandwidth, int | float) or not 0 < self.bandwidth < math.inf
        ):
            raise ValueError(f"bandwidth must be None or bytes/s > 0, not {self.bandwidth!r}")
        for name in ("loss", "duplication"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")

    @property
    def instant(self) -> bool:
        """True when bytes can be handed over synchronously (no timer needed)."""
        return self.latency == 0 and self.jitter == 0 and self.bandwidth is None


LOOPBACK = LinkConfig()


class NetEvent(NamedTuple):
    """One entry of ``VirtualNetwork.events``.

    ``time`` is seconds since the network started (trio time, rounded to the
    nanosecond so that two runs starting at different clock readings compare equal).
    ``src``/``dst`` are ``"addr:port"`` labels for traffic and host addresses (comma
    separated for groups) for faults; ``nbytes`` is 0 where it means nothing.

    Kinds: ``listen``, ``connect``, ``accept``, ``refused``, ``data`` (bytes handed
    to the receiver), ``fin``, ``rst`` (a reset reached the peer), ``broken`` (the
    sender learned that its peer is gone), ``udp-bind``, ``datagram`` (delivered),
    ``lost`` (dropped by ``loss``), ``duplicated``, ``blocked`` (datagram dropped by
    a partition or freeze), ``overflow`` (receive queue full), and the faults
    ``link``, ``partition``, ``heal``, ``crash``, ``freeze``, ``thaw``.
    """

    time: float
    kind: str
    src: str
    dst: str
    nbytes: int


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` names, or None if it is not a numeric address."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def is_wildcard(addr: str) -> bool:
    return addr in ("", WILDCARD_V4, WILDCARD_V6)


def label(addr: str, port: int) -> str:
    """``addr:port`` as ``Location`` prints it (IPv6 in brackets)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
