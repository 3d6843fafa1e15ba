"""``RPS``: remote procedure services, which start tasks on the node that registered
them.

Monitors never miss an exit: the monitors given with ``rps.monitor(task)`` travel
with each call and are attached to the new task on the serving node before it first
runs, so even a task that ends at once reports to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._entity import Entity
from ._links import link_from_peer
from ._task import Task
from ._task_arguments import _body_kind
from ._threads import from_any_thread
from .protocol.codec import Ref
from .protocol.printable import describe
from .services._failures import failure_text
from .values import Location, PycosError

if TYPE_CHECKING:
    pass

__all__ = ["RPS"]

log = logging.getLogger("triopycos.rps")


class RPS(Entity):
    """``RPS(method, name=None)``: a service on the current node that starts a task
    running ``method`` for each call (``rtask = await rps(*args, **kwargs)``).

    ``method`` is an ``async def`` or generator function; a parameter named ``task``
    receives the new task, as for any task body."""

    __slots__ = (
        "__weakref__",
        "_closed",
        "_created",
        "_method",
        "_monitors",
        "_prune_at",
        "_registered",
    )

    _method: Callable[..., Any] | None

    def __init__(self, method: Callable[..., Any], name: str | None = None) -> None:
        from ._node import current_node

        _body_kind(method)  # TypeError for anything but an async or generator function
        if name is None:
            name = getattr(method, "__name__", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"RPS name must be a non-empty str, not {name!r}")
        self._bind(current_node(), name)
        self._method = method
        self._monitors: list[Task] = []
        self._created: dict[Task, None] = {}  # tasks started through this reference
        self._prune_at = 64
        self._registered: set[str] = set()
        self._closed = False

    _kind = "rps"

    def _init_reference(self, ref: Ref) -> None:
        self._method = None
        self._monitors = []
        self._created = {}
        self._prune_at = 64
        self._registered = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"RPS({self._name!r})@{self._location}"

    # -- names --------------------------------------------------------------------

    @from_any_thread
    def register(self) -> int:
        """Make it locatable by its name: 0, or -1 (name taken, or a reference)."""
        if not self._local or self._closed:
            return -1
        return self._node._names.register("rps", self._name, self)

    @from_any_thread
    def unregister(self) -> int:
        """Remove the registration: 0, or -1 if it was not registered."""
        if not self._local:
            return -1
        return self._node._names.unregister("rps", self._name, self)

    @staticmethod
    async def locate(
        name: str, location: Location | None = None, timeout: float | None = None
    ) -> RPS | None:
        """A reference to the RPS registered as ``name`` (as ``Task.locate``)."""
        from ._node import current_node

        found = await current_node()._locate("rps", name, location, timeout)
        if found is not None and not isinstance(found, RPS):
            return None
        return found

    # -- calls --------------------------------------------------------------------

    @from_any_thread
    def monitor(self, task: Task) -> int:
        """Every task created by calls made after this reports its ``MonitorStatus``
        to ``task`` (local or remote): 0, or -1 if ``task`` is not a Task."""
        if not isinstance(task, Task):
            return -1
        if task not in self._monitors:
            self._monitors.append(task)
        return 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Task | None:
        """Start a task at the RPS's node; its reference, or None if that failed (the
        reason is logged here and at the serving node)."""
        return await self._call(args, kwargs)

    async def _call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], link: Task | None = None
    ) -> Task | None:
        """``self(*args, **kwargs)``; with ``link`` (a task of this node, which must
        have a ``LinkState``), the new task is linked with it before it runs, by the
        serving node as it starts it (so a call whose reply is lost cannot leave a
        task that nothing here is linked with)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            log.warning("%r is closed", self)
            return None
        if self._local:
            await trio.lowlevel.checkpoint()
            if self._node._encode_local:
                args, kwargs = self._node._wire_copy((args, kwargs))
            task = self._start(args, kwargs, self._monitors)
            if link is not None:
                await link.link(task)
            return task
        links = () if link is None else (link,)
        result = await self._node._remote.rps_call(self, args, kwargs, list(self._monitors), links)
        if isinstance(result, Task):
            created = self._created
            created[result] = None
            if len(created) >= 2 * self._prune_at:
                # Forget the ones known to have ended, now and then (not per call).
                ended = self._node._remote.task_ended
                for task in [t for t in created if ended(t)]:
                    del created[task]
                self._prune_at = max(64, len(created))
            return result
        if result is not None:
            # The serving peer's value: its text only escaped and bounded (a reply
            # could forge log lines), anything else by its type name.
            reason = failure_text(result) if isinstance(result, BaseException) else describe(result)
            log.warning("call of %r failed: %s", self, reason)
        return None

    def _start(
        self,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        monitors: list[Task],
        asked_by: bytes | None = None,
        links: Sequence[Task] = (),
    ) -> Task:
        """Start a task on this (serving) node with the monitors of the call and of
        this RPS attached, and the call's ``links`` (tasks of the calling peer)
        made, before it runs.  ``asked_by``: the peer that called, whose monitors
        and links here are capped (``PycosError`` if the call's do not fit)."""
        assert self._method is not None
        remote = self._node._remote
        holds = remote.holds
        if asked_by is not None and monitors and not holds.admit(asked_by, len(set(monitors))):
            raise PycosError("too many monitors held for this peer (max_monitors_per_peer)")
        if links and (
            asked_by is None
            or any(t._node_id != asked_by for t in links)
            or not remote.links.admit(asked_by, len(set(links)))
        ):
            raise PycosError("links refused: not the caller's tasks, or too many")
        task = self._node.spawn(self._method, *args, **kwargs)
        for monitor in monitors:
            task._add_monitor(monitor, asked_by)
        for monitor in self._monitors:
            task._add_monitor(monitor)
        for partner in links:
            link_from_peer(task, partner)
        return task

    @from_any_thread
    def close(self) -> int:
        """For a reference: terminate the tasks it created and stop using it: 0.
        -1 for the local RPS itself (use ``unregister``), as in pycos."""
        if self._local:
            return -1
        created, self._created = self._created, {}
        ended = self._node._remote.task_ended
        for task in created:
            if not ended(task):
                task.terminate()
        self._closed = True
        self._monitors.clear()
        return 0
