"""The watch table: local tasks that monitor tasks of other nodes, per node and task,
so that when a node is lost every such monitor hears ``PeerLost`` at once, and
exactly once.

Rules:

* A watch is made before the monitor request is sent (or, for an RPS call's
  monitors, as the call's reply is read), so the status of a task that has already
  ended, which may come back ahead of the reply, finds it.  The task's real exit
  status ends the watch (``heard``).
* When a node is lost (``lost``), every monitor watching one of its tasks is told
  ``MonitorStatus(task, PeerLost, reason)`` and the pair (task, monitor) is marked
  *told* on that node's table.  If the node comes back (a healed partition: the same
  incarnation) and the task's real status arrives after all, it is dropped for a
  monitor marked told: each monitor hears exactly once.  (The node that ran the task
  usually forgot our monitors when it lost us, see ``_holds.py``; the marks are for
  the statuses that still come.)  A monitor that monitors the task again wants the
  real status: its mark goes.
* A node's marks stay on its own table until the status arrives or the node is
  known gone: a new incarnation appears at its location, or it is among the lost
  nodes remembered longest (more than ``LOST_KEPT`` other nodes lost since, and it
  never came back).  Another node's marks never push them out, so "exactly once"
  holds for any number of watched tasks of one node, up to ``MARKS_KEPT`` (the most
  monitors a node holds for one peer by default, ``Limits.max_monitors_per_peer``):
  beyond that a node's oldest marks go, so memory stays bounded per node even when
  partitions come and go while a node lives for months.  Only this node's own tasks
  make watches: a peer cannot add any.
* The lost incarnations remembered also tell ``_remote`` which references are
  stale: messages to them fail at once instead of dialling.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._task import Task
    from .values import Location

__all__ = ["LOST_KEPT", "MARKS_KEPT", "WatchTable"]

#: Lost incarnations remembered (their told marks and their staleness), the most
#: recently lost ones.
LOST_KEPT = 1024
#: Told marks kept per node, the most recent ones.
MARKS_KEPT = 65536


class _Node:
    """One node's watched tasks (task id -> their local monitors, and a task's
    name for the PeerLost status) and its told marks, oldest first."""

    __slots__ = ("marks", "names", "tasks")

    def __init__(self) -> None:
        self.tasks: dict[int, dict[Task, None]] = {}
        self.names: dict[int, str] = {}
        self.marks: OrderedDict[tuple[int, Task], None] = OrderedDict()


class WatchTable:
    """Node id -> ``_Node``, and the lost incarnations."""

    __slots__ = ("_lost", "_nodes")

    def __init__(self) -> None:
        self._nodes: dict[bytes, _Node] = {}
        self._lost: OrderedDict[bytes, Location] = OrderedDict()  # the longest lost first

    def watch(self, node_id: bytes, task_id: int, monitor: Task, name: str = "?") -> bool:
        """``monitor`` (a local task) watches task ``task_id`` of ``node_id``: False
        if it already did.  It wants that task's real status from now on."""
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node()
        node.marks.pop((task_id, monitor), None)  # monitoring again: the real status
        monitors = node.tasks.get(task_id)
        if monitors is None:
            monitors = node.tasks[task_id] = {}
        if name != "?" or task_id not in node.names:
            node.names[task_id] = name
        if monitor in monitors:
            return False
        monitors[monitor] = None
        return True

    def unwatch(self, node_id: bytes, task_id: int, monitor: Task) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            self._unwatch(node_id, node, task_id, monitor)

    def heard(self, node_id: bytes, task_id: int, monitor: Task) -> bool:
        """The real exit status of task ``task_id`` of ``node_id`` arrived for
        ``monitor``: False if it already heard PeerLost for it (drop the status),
        else True.  Either way its watch of that task is over."""
        node = self._nodes.get(node_id)
        if node is None:
            return True
        key = (task_id, monitor)
        if key in node.marks:
            del node.marks[key]
            self._tidy(node_id, node)
            return False
        self._unwatch(node_id, node, task_id, monitor)
        return True

    def lost(self, node_id: bytes, location: Location) -> list[tuple[int, str, list[Task]]]:
        """The node ``node_id`` (at ``location``) was lost: each watched task's id,
        name and monitors, which are to be told PeerLost now (they are marked told)."""
        self._lost[node_id] = location
        self._lost.move_to_end(node_id)
        while len(self._lost) > LOST_KEPT:
            self._forget(next(iter(self._lost)))
        node = self._nodes.get(node_id)
        if node is None:
            return []
        tell = [(task_id, node.names[task_id], list(m)) for task_id, m in node.tasks.items()]
        node.tasks, node.names = {}, {}
        marks = node.marks
        for task_id, _, monitors in tell:
            for monitor in monitors:
                marks[(task_id, monitor)] = None
        while len(marks) > MARKS_KEPT:
            marks.popitem(last=False)
        self._tidy(node_id, node)
        return tell

    def online(self, node_id: bytes, locations: tuple[Location, ...]) -> None:
        """The node ``node_id`` is connected (again).  A lost node that was at one of
        its locations is gone for good (a new incarnation is there): forgotten."""
        self._lost.pop(node_id, None)
        for old, where in list(self._lost.items()):
            if where in locations:
                self._forget(old)

    def is_lost(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a lost incarnation (remembered as such)."""
        return node_id in self._lost

    def watching(self, node_id: bytes) -> int:
        """How many of ``node_id``'s tasks are watched."""
        node = self._nodes.get(node_id)
        return 0 if node is None else len(node.tasks)

    def marks(self, node_id: bytes) -> int:
        """How many told marks ``node_id``'s table holds."""
        node = self._nodes.get(node_id)
        return 0 if node is None else len(node.marks)

    def _unwatch(self, node_id: bytes, node: _Node, task_id: int, monitor: Task) -> None:
        monitors = node.tasks.get(task_id)
        if monitors is not None and monitor in monitors:
            del monitors[monitor]
            if not monitors:
                del node.tasks[task_id]
                del node.names[task_id]
                self._tidy(node_id, node)

    def _forget(self, node_id: bytes) -> None:
        self._lost.pop(node_id, None)
        self._nodes.pop(node_id, None)

    def _tidy(self, node_id: bytes, node: _Node) -> None:
        if not node.tasks and not node.marks:
            del self._nodes[node_id]
