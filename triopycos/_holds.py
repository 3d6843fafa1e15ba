"""Monitors and channel subscriptions held at this node that involve other nodes.

A local task's monitors and a local channel's subscribers live in the task's and the
channel's own insertion-ordered dicts (member -> the peer that asked for it, or None
when this node's own code did), so adding one, or finding one already there, is a
dict lookup: n requests cost O(n), never O(n**2).  This table adds what no single
task or channel knows:

* **A cap per peer.** A peer may ask this node to hold monitors of its tasks
  (TASK_MONITOR, the monitors carried by an RPS_CALL) and subscriptions to its
  channels (CHANNEL_SUBSCRIBE), and each costs memory here for as long as the task
  runs or the channel lives.  At most ``Limits.max_monitors_per_peer`` of them are
  held for one peer at once; one more is refused (-1; an RPS call whose monitors do
  not fit is refused whole), counted in ``statistics().monitors_refused`` and logged
  once per peer incarnation.  Monitors and subscriptions made by this node's own code
  are never refused.
* **An index by node.** Every entry that involves another node (the peer that asked
  for it, or the node the monitor or subscriber lives on) is indexed under that node,
  so when a node is lost each of them is dropped at once (``lost``), without a scan
  of every task and channel: the statuses and messages could not reach the lost
  incarnation anyway, and a long-lived task would otherwise keep them forever.

Rules: every entry is added with ``add`` and leaves with ``remove`` (or with its
whole node, in ``lost``), by the task or channel that holds it; ``remove`` of an
entry whose node was already dropped is a no-op.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from ._channel import Channel
    from ._node import Pycos
    from ._task import Task

__all__ = ["PeerHolds"]

log = logging.getLogger("triopycos.remote")

Member: TypeAlias = "Task | Channel"


class Holder(Protocol):
    """A local task or channel: what holds monitors or subscribers."""

    def _drop_node(self, node_id: bytes) -> None: ...


class PeerHolds:
    """Per node: the local tasks and channels holding entries that involve it, and
    how many entries each peer asked for."""

    __slots__ = ("_asked", "_node", "_targets", "_warned", "refused")

    def __init__(self, node: Pycos) -> None:
        self._node = node
        # node id -> holder -> how many of its entries involve that node
        self._targets: dict[bytes, dict[Holder, int]] = {}
        # peer id -> entries held because that peer asked
        self._asked: dict[bytes, int] = {}
        self._warned: set[bytes] = set()
        self.refused = 0  # requests refused for the cap (statistics)

    def room(self, peer: bytes) -> int:
        """How many more entries ``peer`` may ask for."""
        peers = self._node._peers
        if peers is None:
            return 0
        return max(0, peers.limits.max_monitors_per_peer - self._asked.get(peer, 0))

    def admit(self, peer: bytes, count: int = 1) -> bool:
        """Whether ``peer`` may ask for ``count`` more entries; if not, the refusal
        is counted (and logged once per peer incarnation)."""
        if count <= self.room(peer):
            return True
        self.refused += 1
        if peer not in self._warned:
            self._warned.add(peer)
            peers = self._node._peers
            conn = None if peers is None else peers.by_id.get(peer)
            log.warning(
                "%s holds %d monitors and channel subscriptions here "
                "(Limits.max_monitors_per_peer): more are refused",
                repr(conn) if conn is not None else f"peer {peer.hex()}",
                self._asked.get(peer, 0),
            )
        return False

    def add(self, holder: Holder, member: Member, asked_by: bytes | None) -> None:
        for key in _keys(member, asked_by):
            counts = self._targets.get(key)
            if counts is None:
                counts = self._targets[key] = {}
            counts[holder] = counts.get(holder, 0) + 1
        if asked_by is not None:
            self._asked[asked_by] = self._asked.get(asked_by, 0) + 1

    def remove(self, holder: Holder, member: Member, asked_by: bytes | None) -> None:
        for key in _keys(member, asked_by):
            counts = self._targets.get(key)
            if counts is not None and holder in counts:
                left = counts[holder] - 1
                if left:
                    counts[holder] = left
                else:
                    del counts[holder]
                    if not counts:
                        del self._targets[key]
        if asked_by is not None and asked_by in self._asked:
            left = self._asked[asked_by] - 1
            if left:
                self._asked[asked_by] = left
            else:
                del self._asked[asked_by]

    def lost(self, node_id: bytes) -> None:
        """The node ``node_id`` was lost: every entry involving it leaves its holder."""
        self._warned.discard(node_id)
        holders = self._targets.pop(node_id, None)
        if holders:
            for holder in list(holders):
                holder._drop_node(node_id)

    def held(self, node_id: bytes) -> int:
        """How many entries involving ``node_id`` are held (for tests and status)."""
        return sum(self._targets.get(node_id, {}).values())

    def asked(self, peer: bytes) -> int:
        """How many entries are held because ``peer`` asked."""
        return self._asked.get(peer, 0)


def _keys(member: Member, asked_by: bytes | None) -> tuple[bytes, ...]:
    """The nodes an entry involves (none for a local member added by local code)."""
    lives_on = None if member._local else member._node_id
    if asked_by is None or asked_by == lives_on:
        return () if lives_on is None else (lives_on,)
    return (asked_by,) if lives_on is None else (asked_by, lives_on)


def involves(member: Member, asked_by: bytes | None, node_id: bytes) -> bool:
    """Whether an entry involves the node ``node_id`` (for ``_drop_node``)."""
    return asked_by == node_id or (not member._local and member._node_id == node_id)
