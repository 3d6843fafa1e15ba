"""Channel sends, by id: how a message that channels forward to each other reaches
each channel at most once per send, whatever graph the subscriptions form.

* A send gets an id when its channel first forwards it to another channel (local or
  remote): the id of the node where it was sent and a counter, ``SEND_ID_SIZE``
  bytes, unique among all sends of all nodes.  A message forwarded from channel to
  channel carries its send's id and its hop count (the channels it has passed), on
  the wire too (the last, optional field of CHANNEL_SEND and CHANNEL_DELIVER).
* Each channel keeps the ids it has handled recently (``SeenSends``: the last
  ``SEEN_KEPT``) and drops a message whose id is among them.  So a cycle of
  subscriptions ends where it closes, and a channel that several paths reach (a
  diamond, a mesh) handles the send once: one copy per send and subscriber, and
  forwarding work linear in the subscriptions, where carrying the path gave one
  copy per distinct path (factorial in a mesh).
* A message that has passed ``MAX_HOPS`` channels is dropped whatever its id: the
  absolute stop for a loop, so the guarantee holds even for an id that has left a
  channel's window (more than ``SEEN_KEPT`` other sends through one channel while a
  copy of one was still on its way).

The window is per channel and made only when the channel first meets a forwarded
message: a channel that only ever sends to tasks holds none, and a send to a channel
without channel subscribers costs no id.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Final

# The wire's bounds (a peer's message outside them is malformed, ``protocol/wire.py``).
from .protocol.wire import MAX_HOPS, MAX_SEND_ID

__all__ = ["MAX_HOPS", "MAX_SEND_ID", "SEEN_KEPT", "SEND_ID_SIZE", "SeenSends", "new_send_id"]

#: Ids of sends a channel remembers (the most recent ones).
SEEN_KEPT: Final = 1024
#: Bytes of an id made here: a 16-byte node id and an 8-byte counter.
SEND_ID_SIZE: Final = 24

_counter = itertools.count(1)


def new_send_id(node_id: bytes) -> bytes:
    """A new send id for a send made on the node ``node_id``."""
    return node_id + next(_counter).to_bytes(8, "big")


class SeenSends:
    """The ids of the last ``SEEN_KEPT`` sends one channel has handled."""

    __slots__ = ("_ids", "_order")

    def __init__(self) -> None:
        self._ids: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def first(self, send_id: bytes) -> bool:
        """Record ``send_id``: True if this channel had not handled it (recently)."""
        ids = self._ids
        if send_id in ids:
            return False
        ids.add(send_id)
        order = self._order
        order.append(send_id)
        if len(order) > SEEN_KEPT:
            ids.discard(order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._order)
