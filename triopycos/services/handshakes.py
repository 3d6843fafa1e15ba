"""Running one handshake over a stream, and what the peer supervisor needs around
it: the peer's address for log lines, the busy notice for a connection closed to
make room, and a quota on warnings about strangers.

Rules:

* ``exchange`` shuttles bytes between the stream and the sans-IO ``Handshake`` and
  tells the admission slot (if any) when the hello has arrived.
* A busy notice is one write that cannot wait (``transport.nowait_sender``): a
  connection closed to make room must not hold anything while it says so.  Over TLS
  there is no such write, and the connection is just closed.
"""

from __future__ import annotations

import contextlib
import logging
import math

import trio

from ..protocol.handshake import BUSY_REFUSAL, Authenticated, Handshake, HandshakeFailed
from ..transport import nowait_sender, remote_address
from ..transport.errors import STREAM_ERRORS
from .admission import Slot

__all__ = ["LogQuota", "describe", "exchange", "tell_busy"]

log = logging.getLogger("triopycos.peers")

_READ_SIZE = 4096  # one handshake frame at most


async def exchange(stream: trio.abc.Stream, machine: Handshake, slot: Slot | None) -> Authenticated:
    """Shuttle the handshake's bytes until it is done; ``HandshakeFailed`` (after
    telling the peer why, if it still listens) if it fails."""
    await stream.send_all(machine.data_to_send())
    while True:
        try:
            event = machine.next_event()
        except HandshakeFailed:
            with contextlib.suppress(*STREAM_ERRORS):
                await stream.send_all(machine.data_to_send())
            raise
        if slot is not None and not slot.hello and machine.hello_received:
            # It said hello in time: from now on only handshake_timeout bounds it,
            # and it is among the last to be evicted.
            slot.hello = True
            slot.scope.deadline = math.inf
        out = machine.data_to_send()
        if out:
            await stream.send_all(out)
        if event is not None:
            return event
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            raise HandshakeFailed("connection closed during the handshake")
        machine.receive_data(data)


class LogQuota:
    """At most ``lines`` warnings per ``period`` seconds; the rest are counted, and
    their number is logged when the next period lets a line through."""

    def __init__(
        self,
        lines: int = 20,
        period: float = 10.0,
        *,
        what: str = "failed inbound handshakes",
        logger: logging.Logger = log,
    ) -> None:
        self._lines = lines
        self._period = period
        self._what = what
        self._log = logger
        self._start = -math.inf
        self._used = 0
        self._dropped = 0

    def allow(self, now: float) -> bool:
        if now - self._start >= self._period:
            if self._dropped:
                self._log.warning("%d more %s were not logged", self._dropped, self._what)
            self._start, self._used, self._dropped = now, 0, 0
        if self._used < self._lines:
            self._used += 1
            return True
        self._dropped += 1
        return False


def describe(stream: trio.abc.Stream) -> str:
    host, port = remote_address(stream)
    return "peer" if host == "?" else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tell_busy(stream: trio.abc.Stream) -> None:
    """Tell a connection closed to make room that it may try again (best effort)."""
    send = nowait_sender(stream)
    if send is not None:
        with contextlib.suppress(*STREAM_ERRORS):
            send(BUSY_REFUSAL)
