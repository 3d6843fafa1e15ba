"""Results of the tasks this node's RPS calls started, pushed by the serving node
when each task ends (TASK_RESULT): ``finish()`` of such a task needs no request and
no round trip.

Rules:

* **Only what this node asked for.**  An entry is made when the reply to one of this
  node's RPS calls is read (``expect``, from the call's ``on_reply``: the reader calls
  it before it dispatches anything the serving node sent after the reply, so the
  task's result, which may follow at once and be read before the calling task even
  runs again, finds its entry).  A TASK_RESULT for anything else (a task this node
  did not start, a result already in, one after its node was lost) is dropped and
  counted in ``statistics().results_dropped``: a peer cannot fill the table.
* **Bounded per serving node**: at most ``Limits.max_results_per_peer`` entries and
  ``Limits.max_result_bytes_per_peer`` bytes of kept results (their encoded size).
  To make room, the oldest results are dropped, those ``finish()`` has read first
  (``finish()`` may be called again, and a result kept answers it at once; one
  dropped is asked of the serving node, which keeps the last 4096 ended tasks).  An
  entry whose result has not arrived yet, which ``finish()`` calls may wait on, is
  never dropped: when all of a node's entries wait, a new call's task gets none (its
  ``finish()`` asks the serving node, as for any remote task).  A result bigger than
  the bound alone is handed to the waiters there are, and not kept.  Results dropped
  before anyone read them are counted in ``results_dropped`` too.
* **A lost serving node**: its entries still waiting are given None at once (the
  documented failure value: every ``finish()`` waiting returns None, and later ones
  at once, without dialling).  The results that had arrived stay readable; the
  tables of all lost nodes share one budget of one node's bounds (the oldest lost
  node's results go first), so nodes that come and go do not add up.  If a lost
  node comes back (a healed partition: the same incarnation), its table is its own
  again.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .services.timer import Parked

if TYPE_CHECKING:
    from ._node import Pycos
    from .services.peer import PeerConnection

__all__ = ["Pushed", "PushedResults"]

log = logging.getLogger("triopycos.remote")


class Pushed:
    """A pushed task result, or the promise of one, and the tasks waiting for it."""

    __slots__ = ("arrived", "done", "read", "size", "value", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.waiters: list[Parked] = []  # each woken with True
        self.size = 0  # encoded bytes of the value, once it has arrived
        self.arrived = False  # the serving node pushed it (not None for a loss)
        self.read = False  # a finish() has returned it

    def finish(self, value: Any) -> None:
        self.value = value
        self.done = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.wake(True)


class _Table:
    """One serving node's entries: those waiting for their result, and those done
    in the order they are to be dropped (read ones first, then oldest first)."""

    __slots__ = ("done", "size", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[int, Pushed] = {}
        self.done: OrderedDict[int, Pushed] = OrderedDict()
        self.size = 0  # bytes of the results in ``done``

    def __len__(self) -> int:
        return len(self.waiting) + len(self.done)

    def get(self, task_id: int) -> Pushed | None:
        return self.waiting.get(task_id) or self.done.get(task_id)


class PushedResults:
    """The node's pushed results, per serving node (see the module docstring)."""

    __slots__ = ("_lost", "_lost_count", "_lost_size", "_node", "_tables", "dropped")

    def __init__(self, node: Pycos) -> None:
        self._node = node
        self._tables: dict[bytes, _Table] = {}
        # Lost nodes that still have results here, the longest lost first, and
        # what their tables hold in all (one shared budget).
        self._lost: OrderedDict[bytes, None] = OrderedDict()
        self._lost_count = 0
        self._lost_size = 0
        self.dropped = 0  # results not kept, or dropped unread (statistics)

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def _bounds(self) -> tuple[int, int]:
        peers = self._node._peers
        if peers is None:
            return 0, 0
        return peers.limits.max_results_per_peer, peers.limits.max_result_bytes_per_peer

    # -- this node's calls --------------------------------------------------------

    def expect(self, node_id: bytes, task_id: int) -> None:
        """The reply to our RPS call that started task ``task_id`` on ``node_id``
        was read: keep its result when it comes (if there is room)."""
        table = self._tables.get(node_id)
        if table is None:
            table = self._tables[node_id] = _Table()
        elif table.get(task_id) is not None:
            return
        most, _ = self._bounds()
        while len(table) >= most and table.done:
            self._drop_oldest(node_id, table)
        if len(table) < most:
            table.waiting[task_id] = Pushed()
        elif not table:
            del self._tables[node_id]

    def get(self, node_id: bytes, task_id: int) -> Pushed | None:
        table = self._tables.get(node_id)
        return None if table is None else table.get(task_id)

    def read(self, node_id: bytes, task_id: int) -> None:
        """``finish()`` has returned this result: it is the first to go if room is
        needed (another ``finish()`` of the task still gets it while it is kept)."""
        table = self._tables.get(node_id)
        pushed = None if table is None else table.done.get(task_id)
        if table is not None and pushed is not None and not pushed.read:
            pushed.read = True
            table.done.move_to_end(task_id, last=False)

    def ended(self, node_id: bytes, task_id: int) -> bool:
        """Whether the task is known to have ended (its result is here)."""
        table = self._tables.get(node_id)
        return table is not None and task_id in table.done

    # -- the serving node's pushes ------------------------------------------------

    def arrived(self, conn: PeerConnection, task_id: int, value: Any) -> None:
        """A TASK_RESULT from ``conn``: kept only if this node is waiting for it."""
        node_id = conn.node_id
        table = self._tables.get(node_id)
        pushed = None if table is None else table.waiting.pop(task_id, None)
        if table is None or pushed is None:
            self.dropped += 1
            conn.log_once(
                "result", "pushed result dropped: not of a task our RPS calls started and wait on"
            )
            return
        size = self._size_of(value)
        _, most_bytes = self._bounds()
        if size > most_bytes:  # too big to keep: for the finish() calls waiting only
            if not pushed.waiters:
                self.dropped += 1
            pushed.finish(value)
            if not table:
                del self._tables[node_id]
            return
        pushed.size = size
        pushed.arrived = True
        table.done[task_id] = pushed
        table.size += size
        pushed.finish(value)
        while table.size > most_bytes:
            self._drop_oldest(node_id, table)

    def _size_of(self, value: Any) -> int:
        if value is None or type(value) in (bool, int, float):
            return 16
        try:
            return len(self._node._codec.encode(value))
        except (TypeError, ValueError):  # (it was decoded, so it should encode)
            return sys.getsizeof(value)

    def _drop_oldest(self, node_id: bytes, table: _Table) -> None:
        _, pushed = table.done.popitem(last=False)
        table.size -= pushed.size
        if node_id in self._lost:
            self._lost_count -= 1
            self._lost_size -= pushed.size
        if pushed.arrived and not pushed.read:
            self.dropped += 1
        if not table:
            del self._tables[node_id]
            self._lost.pop(node_id, None)

    # -- serving nodes coming and going -------------------------------------------

    def lost(self, node_id: bytes) -> None:
        """The serving node ``node_id`` was lost: its waiting entries get None at
        once; what it holds joins the lost nodes' shared budget."""
        table = self._tables.get(node_id)
        if table is None:
            return
        waiting, table.waiting = table.waiting, {}
        for task_id, pushed in waiting.items():
            table.done[task_id] = pushed
            pushed.finish(None)  # no result will come: finish() gives None
        if node_id not in self._lost:
            self._lost[node_id] = None
            self._lost_count += len(table)
            self._lost_size += table.size
        most, most_bytes = self._bounds()
        while self._lost and (self._lost_count > most or self._lost_size > most_bytes):
            oldest = next(iter(self._lost))
            self._drop_oldest(oldest, self._tables[oldest])

    def online(self, node_id: bytes) -> None:
        """The node ``node_id`` is connected (again): its table is its own."""
        if node_id in self._lost:
            del self._lost[node_id]
            table = self._tables[node_id]
            self._lost_count -= len(table)
            self._lost_size -= table.size
