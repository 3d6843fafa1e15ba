"""Links between this node's tasks and tasks of other nodes (``Task.link`` across
nodes; ``_links.py`` holds the rules every link follows).

A link across nodes is held on both nodes, each in its task's ``LinkState`` (the
remote partner as a reference), and indexed here by the partner's node, so that:

* **a lost node** applies ``PeerLost`` at once to every local task linked with one of
  its tasks (``lost``), as a lost node's monitors hear ``PeerLost``;
* **a peer's links are bounded**: a peer may ask this node to hold links
  (TASK_LINK) only up to ``Limits.max_monitors_per_peer`` at once; one more is
  refused (-1), counted in ``statistics().monitors_refused`` and logged once per
  peer incarnation.

The wire (protocol/messages.py): the node of the task that calls ``link`` records
the link, then asks the partner's node with TASK_LINK (0 / -1); recording first
means a loss of that node during the request is applied to the caller, as it would
be a moment later.  An end, or ``unlink``, travels as TASK_UNLINK (with the ended
task's ``MonitorStatus``, or None for ``unlink``).  Both ride the one connection
between the two nodes, in order, so an UNLINK never overtakes the LINK before it,
and an ``unlink`` that returned is ahead of any later exit of the same task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .values import MonitorStatus, PeerLost

if TYPE_CHECKING:
    from ._node import Pycos
    from ._task import Task

__all__ = ["RemoteLinks"]

log = logging.getLogger("triopycos.remote")


class RemoteLinks:
    """The links of local tasks with tasks of other nodes, by the partner's node."""

    __slots__ = ("_by_node", "_node", "_warned", "refused")

    def __init__(self, node: Pycos) -> None:
        self._node = node
        # partner's node id -> (local task, remote partner) -> None, in link order
        self._by_node: dict[bytes, dict[tuple[Task, Task], None]] = {}
        self._warned: set[bytes] = set()
        self.refused = 0  # links a peer asked for over the cap (monitors_refused)

    def add(self, local: Task, remote: Task, *, asked: bool) -> bool:
        """Index the link of ``local`` with ``remote``.  ``asked``: the partner's node
        asked for it (TASK_LINK), so its cap applies; False if refused."""
        node_id = remote._node_id
        pairs = self._by_node.get(node_id)
        if pairs is None:
            pairs = self._by_node[node_id] = {}
        if asked and (local, remote) not in pairs and len(pairs) >= self._cap():
            self.refused += 1
            if node_id not in self._warned:
                self._warned.add(node_id)
                log.warning(
                    "peer %s holds %d links here (Limits.max_monitors_per_peer): more are refused",
                    node_id.hex(),
                    len(pairs),
                )
            return False
        pairs[(local, remote)] = None
        return True

    def admit(self, node_id: bytes, count: int) -> bool:
        """Whether the peer ``node_id`` may make this node hold ``count`` more links
        (an RPS call's); if not, the refusal is counted."""
        if len(self._by_node.get(node_id, ())) + count <= self._cap():
            return True
        self.refused += 1
        return False

    def remove(self, local: Task, remote: Task) -> None:
        pairs = self._by_node.get(remote._node_id)
        if pairs is not None:
            pairs.pop((local, remote), None)
            if not pairs:
                del self._by_node[remote._node_id]

    def lost(self, node_id: bytes, reason: str) -> None:
        """The node ``node_id`` was lost: each local task linked with one of its tasks
        gets ``MonitorStatus(partner, PeerLost, reason)`` as the partner's exit."""
        from ._links import exit_signal

        self._warned.discard(node_id)
        pairs = self._by_node.pop(node_id, None)
        if not pairs:
            return
        for local, remote in pairs:
            state = local._links
            if state is not None and state.partners.pop(remote, None) is not None:
                exit_signal(local, MonitorStatus(remote, PeerLost, reason))

    def held(self, node_id: bytes) -> int:
        """How many links with tasks of ``node_id`` are held (for tests)."""
        return len(self._by_node.get(node_id, ()))

    def _cap(self) -> int:
        peers = self._node._peers
        return 0 if peers is None else peers.limits.max_monitors_per_peer
