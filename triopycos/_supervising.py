"""The supervisor task: starts a ``Supervisor``'s children, hears their ends and
restarts them.

Rules of the loop (docs/supervision.md has the user's version):

* The supervisor monitors each child before the child can run (a task child is
  made and monitored with no checkpoint in between; an RPS child's monitor travels
  with the call and is attached before the task first runs), so no end is missed.
  Each status is matched with the child's *current* incarnation (``_Child.key``);
  a status for an incarnation already replaced or stopped is dropped.
* The mailbox is read in order, but stopping a child waits for that child's status
  only: others read meanwhile wait in ``backlog``, handled next, in order.
* A start that fails (no RPS found, the call failed) is an abnormal end of the
  child at once: a ``PycosError`` status for a placeholder key goes to the
  backlog, so it is counted and restarted like any other end, without recursion.
* A restart is counted before it is made; the (max_restarts + 1)-th within
  max_seconds makes the supervisor stop every child, in reverse order, and end
  with ``SupervisorGaveUp``.
* Stopping a child: ``terminate()``, then wait (up to its ``shutdown`` seconds) for
  its status.  A remote child that cannot be reached, that is lost (``PeerLost``)
  or that does not end in time goes to the node's reaper (``_reaper.py``), which
  ends it when its node is back.
* When the supervisor's task is terminated, it stops its children in a shielded
  scope before its own end is reported, so whoever monitors it (a parent
  supervisor) hears of its end only once its children have ended.  When its node
  is closing, the node ends the local children itself: the supervisor only tells
  the remote ones to end, without waiting.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import trio

from ._links import trap_exits
from ._reaper import reap
from ._rps import RPS
from ._supervisor import ChildSpec, Supervisor
from ._task import Task
from .protocol.printable import describe, escape
from .values import MonitorStatus, PeerLost, PycosError
from .values.errors import SupervisorGaveUp

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["supervisor"]

log = logging.getLogger("triopycos.supervisor")

_TIMED_OUT: Any = object()


class _NotStarted:
    """The key of a child whose start failed: its status is in the backlog."""

    __slots__ = ()


class _Child:
    __slots__ = ("key", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        # The current incarnation: its Task, a _NotStarted, or None (not running).
        self.key: Task | _NotStarted | None = None

    @property
    def id(self) -> Hashable:
        return self.spec.child_id


class _GiveUp(Exception):
    pass


async def supervisor(task: Task, sup: Supervisor) -> None:
    """The body of a ``Supervisor``'s task."""
    await _Run(task, sup).run()


class _Run:
    def __init__(self, task: Task, sup: Supervisor) -> None:
        self.task = task
        self.node: Pycos = task._node
        self.sup = sup
        self.children = [_Child(spec) for spec in sup._specs]
        self.by_key: dict[object, _Child] = {}
        self.backlog: deque[MonitorStatus] = deque()
        self.restarts: deque[float] = deque()
        self.ignored = False
        # The task remote children are linked with (see ``anchor``).
        self.anchor: Task | None = None

    async def run(self) -> None:
        try:
            for child in self.children:
                await self.start(child)
            while True:
                status = await self.next_status()
                key = _key(status.info)
                if isinstance(key, Task) and key._local and key._alive:
                    continue  # not its end (a status some task of this node made up)
                ended = self.by_key.pop(key, None)
                if ended is None:
                    continue  # an incarnation replaced or stopped since
                ended.key = None
                self.publish(ended)
                await self.ended(ended, status)
        except _GiveUp as why:
            log.error("%r gives up: %s", self.sup, why)
            for child in reversed(self.children):
                await self.stop(child)
            raise SupervisorGaveUp(f"supervisor gave up: {why}") from None
        finally:
            await self.shutdown()
            self.sup._children.clear()
            if self.anchor is not None:
                self.anchor.terminate()

    # -- one child's end ----------------------------------------------------------

    async def ended(self, child: _Child, status: MonitorStatus) -> None:
        abnormal = status.type is not StopIteration
        how = _how(status)
        if status.type is PeerLost and isinstance(status.info, Task):
            reap(status.info)  # its node was cut off, maybe not dead
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and not abnormal):
            log.info("%r: child %r ended (%s), not restarted", self.sup, child.id, how)
            if restart == "temporary":
                self.remove(child)
            return
        self.count_restart(child, how)
        log.info("%r: child %r ended (%s): restarting", self.sup, child.id, how)
        strategy = self.sup._strategy
        if strategy == "one_for_one":
            group = [child]
        elif strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[self.children.index(child) :]
        stopped = [c for c in group if c is not child and c.key is not None]
        for other in reversed(stopped):
            await self.stop(other)
        for other in group:
            if other is child or (other in stopped and other.spec.restart != "temporary"):
                await self.start(other)
            elif other in stopped:
                self.remove(other)

    def count_restart(self, child: _Child, how: str) -> None:
        now = trio.current_time()
        restarts = self.restarts
        restarts.append(now)
        window = self.sup._max_seconds
        while restarts and restarts[0] <= now - window:
            restarts.popleft()
        if len(restarts) > self.sup._max_restarts:
            raise _GiveUp(
                f"{len(restarts)} restarts within {window:g} s, more than "
                f"max_restarts={self.sup._max_restarts} (last: child {child.id!r} {how})"
            )

    def remove(self, child: _Child) -> None:
        self.children.remove(child)
        self.sup._children.pop(child.id, None)

    def publish(self, child: _Child) -> None:
        key = child.key
        self.sup._children[child.id] = key if isinstance(key, Task) else None

    # -- starting -----------------------------------------------------------------

    async def start(self, child: _Child) -> None:
        try:
            started = await self.spawn(child.spec)
        except (TypeError, ValueError, PycosError) as exc:
            log.warning("%r: child %r could not start: %r", self.sup, child.id, exc)
            started = None
        if started is None:
            key: Task | _NotStarted = _NotStarted()
            self.backlog.append(MonitorStatus(key, PycosError, "the child could not start"))
        else:
            key = started
        child.key = key
        self.by_key[key] = child
        self.publish(child)

    async def spawn(self, spec: ChildSpec) -> Task | None:
        """Start the child of ``spec``, monitored by this task: its Task, or None."""
        start = spec.start
        kwargs = dict(spec.kwargs or {})
        if isinstance(start, str | RPS):
            return await self.call(spec, start, kwargs)
        if isinstance(start, type) and issubclass(start, Supervisor):
            child = start(*spec.args, **kwargs).task
        else:
            child = self.node.spawn(start, *spec.args, **kwargs)
        self.adopt(child)
        return child

    def adopt(self, child: Task) -> None:
        """Monitor a new local child (before it runs), which is a daemon task if the
        supervisor is one (so a daemon supervisor never keeps its node open)."""
        child.notify(self.task)
        if self.task._daemon:
            child.set_daemon()

    async def call(self, spec: ChildSpec, start: str | RPS, kwargs: dict[str, Any]) -> Task | None:
        if isinstance(start, str):
            found = await RPS.locate(start, timeout=spec.locate_timeout)
            if found is None:
                log.warning("%r: child %r: no RPS %r found", self.sup, spec.child_id, start)
                return None
            start = found
        if start._node_id == self.node._node_id:
            local = start if start._local else self.node._names.by_kind["rps"].get(start.name)
            if not isinstance(local, RPS):
                return None
            child = await local(*spec.args, **kwargs)
            if child is not None:
                self.adopt(child)
            return child
        # A reference of our own, so that its monitor (this task) travels with this
        # call only, and is attached on the serving node before the child runs.
        rps = RPS._reference(self.node, start._triopycos_ref_())
        rps.monitor(self.task)
        # Shielded: a call cancelled after it was sent would start a child that no
        # one knows of.  It cannot hang: a lost connection fails it.
        with trio.CancelScope(shield=True):
            child = await rps._call(spec.args, kwargs, link=self.link_anchor())
        return child

    def link_anchor(self) -> Task:
        """The task of this node that remote children are linked with, by the call
        that starts each (``RPS._call``): when the child's node loses this one, it
        ends the child itself, so a child whose call's reply was lost (which this
        supervisor never heard of) does not run on.  It traps exits and drops them
        (this task hears every end by its monitors), and ends with the supervisor,
        which ends the children it could not reach."""
        anchor = self.anchor
        if anchor is None or not anchor._alive:
            anchor = self.anchor = self.node.spawn(_anchor)
            anchor.set_daemon()
            trap_exits(anchor, True)
        return anchor

    # -- stopping -----------------------------------------------------------------

    async def stop(self, child: _Child) -> None:
        """End ``child``'s current incarnation, if any, and wait for its end."""
        key = child.key
        if key is None:
            return
        child.key = None
        del self.by_key[key]
        self.publish(child)
        if not isinstance(key, Task):
            return
        if key.terminate() < 0 and not key._local:
            reap(key)  # out of reach now
            return
        status = await self.wait_for(key, child.spec._shutdown())
        if status is None:
            log.warning(
                "%r: child %r (%r) did not end within %g s of terminate()",
                self.sup,
                child.id,
                key,
                child.spec._shutdown(),
            )
        if not key._local and (status is None or status.type is PeerLost):
            reap(key)

    async def shutdown(self) -> None:
        """End every child that still runs: the supervisor's own end."""
        running = [c for c in reversed(self.children) if c.key is not None]
        if not running:
            return
        if self.node._closed:
            for child in running:
                if isinstance(child.key, Task):
                    child.key.terminate()
                child.key = None
            return
        with trio.CancelScope(shield=True):
            for child in running:
                await self.stop(child)

    # -- the mailbox --------------------------------------------------------------

    async def next_status(self) -> MonitorStatus:
        if self.backlog:
            return self.backlog.popleft()
        while True:
            message = await self.task.receive()
            if isinstance(message, MonitorStatus):
                return message
            self.ignore(message)

    async def wait_for(self, task: Task, limit: float) -> MonitorStatus | None:
        """The status of ``task``, waiting up to ``limit`` seconds; the statuses of
        others read meanwhile go to the backlog."""
        for status in self.backlog:
            if _key(status.info) == task:
                self.backlog.remove(status)
                return status
        deadline = trio.current_time() + limit
        while True:
            left = deadline - trio.current_time()
            if left <= 0:
                return None
            timeout = None if left == math.inf else left
            message = await self.task.receive(timeout=timeout, alarm_value=_TIMED_OUT)
            if message is _TIMED_OUT:
                return None
            if not isinstance(message, MonitorStatus):
                self.ignore(message)
            elif _key(message.info) == task:
                if not (task._local and task._alive):  # (else made up: it runs)
                    return message
            elif _key(message.info) in self.by_key:
                # Another current child's end, handled next.  Anything else cannot
                # be one (bounded: at most one per child).
                self.backlog.append(message)

    def ignore(self, message: object) -> None:
        if not self.ignored:
            self.ignored = True
            log.warning("%r ignores messages other than its children's statuses", self.sup)


async def _anchor(task: Task) -> None:
    """The body of a supervisor's link anchor (``_Run.link_anchor``)."""
    while True:
        await task.receive()


def _key(info: object) -> object:
    """A status's ``info`` as a key of ``by_key`` (anything unhashable: no child's)."""
    try:
        hash(info)
    except TypeError:
        return None
    return info


def _how(status: MonitorStatus) -> str:
    """How a child ended, for log lines: its values may be a peer's, so only type
    names and escaped, bounded excerpts."""
    kind = status.type
    if kind is StopIteration:
        return "returned"
    if kind is GeneratorExit:
        return "terminated"
    if kind is PeerLost:
        value = status.value
        why = escape(value, 200) if isinstance(value, str) else describe(value)
        return f"lost with its node: {why}"
    return f"raised {kind.__name__ if isinstance(kind, type) else describe(kind)}"
