"""Ending remote children that their supervisor could not reach.

A supervisor that hears ``PeerLost`` for a child on another node restarts it, but
the old incarnation may live on: the node was cut off, not dead.  Likewise a child
that must be stopped while its node is out of reach (the supervisor gives up, is
terminated, or restarts it with its siblings).  Such a task is a *stray*: the
node's reaper keeps it and, whenever its node is connected again (the same
incarnation), monitors it afresh and terminates it, until its real exit status
arrives.  So once a partition heals, no two incarnations of a child run, and no
child of a supervisor that has ended runs on.

* One reaper per node, a daemon task started when the first stray comes, ending
  when none is left.  It looks every ``RETRY`` seconds (trio time): nothing tells a
  task when a peer comes back (``peer_status`` belongs to the application).
* A stray is dropped when its exit status arrives (not ``PeerLost``), when its node
  says it does not know it (it ended long ago), or when another incarnation of its
  node is connected at its location (a restarted node: the old one's tasks are
  gone).  A stray whose node never comes back stays, at most ``MAX_STRAYS`` per
  node (the oldest go first, with a warning).
* Supervisors monitor their children; they do not link with them (a link would
  end a child on its own node when that node loses the supervisor's, but would also
  need the supervisor to trap exits and would not cover a child started by a call
  whose reply was lost).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

import trio

from ._task import Task
from .values import MonitorStatus, PeerLost

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["MAX_STRAYS", "RETRY", "reap"]

log = logging.getLogger("triopycos.supervisor")

#: Seconds between two looks at the strays' nodes.
RETRY = 1.0
#: Strays kept per node.
MAX_STRAYS = 4096

_reapers: weakref.WeakKeyDictionary[Pycos, _Reaper] = weakref.WeakKeyDictionary()


def reap(task: Task) -> None:
    """Have the node holding the reference ``task`` (a remote task) end it as soon
    as its node can be reached."""
    if task._local:
        return
    node = task._node
    if node._closed:
        return
    reaper = _reapers.get(node)
    if reaper is None:
        reaper = _reapers[node] = _Reaper(node)
    reaper.add(task)


class _Reaper:
    __slots__ = ("node", "strays", "task")

    def __init__(self, node: Pycos) -> None:
        self.node = node
        # Stray -> whether it has been told to end and its status is awaited.
        self.strays: dict[Task, bool] = {}
        self.task: Task | None = None

    def add(self, stray: Task) -> None:
        if stray in self.strays:
            return
        self.strays[stray] = False
        if len(self.strays) > MAX_STRAYS:
            oldest = next(iter(self.strays))
            del self.strays[oldest]
            log.warning("%r may still run: too many unreachable tasks to end", oldest)
        if self.task is None:
            # (A function, not a bound method: task bodies' kinds are cached.)
            self.task = self.node.spawn(_reaping, self)

    async def _try(self, task: Task, stray: Task) -> None:
        if not stray.is_alive():  # its node (this incarnation) is not connected
            if stray.location in self.node.peers():
                self.strays.pop(stray, None)  # another incarnation is there: it is gone
            return
        # Monitoring again wants the real status, even after PeerLost for it.
        conn = self.node._remote._connected(stray._node_id)
        with trio.move_on_after(RETRY):
            if await task.monitor(stray) < 0:
                # -1 from its node (the connection asked is still open): it does not
                # know the task, long ended.  Else the connection was lost meanwhile.
                # (pop: a reap() during the await may have evicted it already.)
                if conn is not None and not conn.closed:
                    self.strays.pop(stray, None)
                return
            stray.terminate()
            if stray in self.strays:
                self.strays[stray] = True
            log.info("terminating %r, a child its supervisor had lost", stray)

    def _heard(self, message: object) -> None:
        if not isinstance(message, MonitorStatus) or not isinstance(message.info, Task):
            return
        stray = message.info
        if stray in self.strays:
            if message.type is PeerLost:
                self.strays[stray] = False  # lost again: try again when it is back
            else:
                del self.strays[stray]


async def _reaping(task: Task, reaper: _Reaper) -> None:
    task.set_daemon()
    try:
        while reaper.strays:
            for stray, told in list(reaper.strays.items()):
                if not told:
                    await reaper._try(task, stray)
            message = await task.receive(timeout=RETRY)
            while message is not None:
                reaper._heard(message)
                message = await task.receive(timeout=0)
    finally:
        reaper.task = None
