"""On-demand dials: connections a node opens to reach a node it is not peered with,
because a reference to one of that node's tasks or channels was used (references
travel to third nodes in messages).

Rules:

* At most ``Limits.max_dials`` such dials at once, for everything; at most
  ``Limits.max_dials_per_peer`` of them on behalf of one peer: to deliver the exit
  status to a monitor that peer asked for, or a channel's message to a subscriber
  it subscribed, living on a node this node is not peered with.  A peer's messages
  cannot make the node dial more than that, however many made-up locations they
  name (each dial holds a socket and a task for up to ``connect_timeout``).
* A request of this node's own code (``deliver``, ``monitor``, ``finish``, an RPS
  call, ``subscribe``, ``locate``/``status``/``ping`` at a location) waits for a
  free slot, within its own timeout.  A ``send`` (which cannot wait) and anything on
  a peer's behalf is refused when there is none: -1, counted in
  ``statistics().dials_refused``.  A send to a node already being dialled joins
  the queue of that dial and takes no slot.
* What waits for a dial is bounded too: the messages queued for one node are at
  most ``Limits.max_outbox_bytes`` (encoded), as a connection's outbox is; beyond
  that a send is refused and counted in ``messages_refused``.
* Warnings about refused dials and messages dropped for want of a connection are
  rate-limited (``LogQuota``): a flood of them is a count, not a flood of lines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .protocol.messages import TaskSend
from .services.handshakes import LogQuota

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["DialLimiter", "Unreached"]

log = logging.getLogger("triopycos.remote")


class Unreached:
    """Messages for one node being dialled, in the order sent."""

    __slots__ = ("flushed", "messages", "size")

    def __init__(self) -> None:
        self.messages: list[TaskSend] = []
        self.size = 0  # encoded bytes
        self.flushed = trio.Event()  # set once the queue went out (or was dropped)


class DialLimiter:
    """Slots for on-demand dials: ``max_dials`` in all, ``max_dials_per_peer`` for
    each peer on whose behalf the node dials."""

    __slots__ = ("_lot", "_node", "_per_peer", "active", "quota", "refused")

    def __init__(self, node: Pycos) -> None:
        self._node = node
        self.active = 0
        self._per_peer: dict[bytes, int] = {}
        self._lot = trio.lowlevel.ParkingLot()
        self.refused = 0  # dials refused for want of a slot (statistics)
        self.quota = LogQuota(what="lines about on-demand dials", logger=log)

    def _limits(self) -> tuple[int, int]:
        peers = self._node._peers
        if peers is None:
            return 0, 0
        return peers.limits.max_dials, peers.limits.max_dials_per_peer

    def try_take(self, for_peer: bytes | None, where: object) -> bool:
        """A slot now, for a dial to ``where`` (on behalf of ``for_peer``, if not
        None): False (counted, logged within the quota) if there is none."""
        most, per_peer = self._limits()
        if self.active < most and (for_peer is None or self._per_peer.get(for_peer, 0) < per_peer):
            self._take(for_peer)
            return True
        self.refused += 1
        if self.quota.allow(trio.current_time()):
            if for_peer is not None and self.active < most:
                why = f"{per_peer} on behalf of one peer (Limits.max_dials_per_peer)"
            else:
                why = f"{most} in all (Limits.max_dials)"
            log.warning(
                "no connection to %s opened: as many dials at once as allowed, %s", where, why
            )
        return False

    async def take(self) -> None:
        """A slot for a dial of this node's own code: waits until one is free."""
        while self.active >= self._limits()[0]:
            await self._lot.park()
        self._take(None)

    def _take(self, for_peer: bytes | None) -> None:
        self.active += 1
        if for_peer is not None:
            self._per_peer[for_peer] = self._per_peer.get(for_peer, 0) + 1

    def release(self, for_peer: bytes | None) -> None:
        self.active -= 1
        if for_peer is not None:
            left = self._per_peer[for_peer] - 1
            if left:
                self._per_peer[for_peer] = left
            else:
                del self._per_peer[for_peer]
        self._lot.unpark()

    def of_peer(self, peer: bytes) -> int:
        """Dials on behalf of ``peer`` now (for tests and status)."""
        return self._per_peer.get(peer, 0)
