"""The names registered on a node (tasks, channels and RPSs share the mechanism)
and ``locate``: finding a name here, at one peer, or at whichever answers first.

A name is registered once per kind: registering a name held by another object
fails (-1, with a warning), registering it again for the same object succeeds.
Whoever waits for a name to appear (a ``locate`` with a timeout, here or for a
peer) is woken by every registration and looks again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import trio

from ._task_arguments import check_timeout
from .values import Location

__all__ = ["Kind", "NameRegistry", "NameStatistics"]

log = logging.getLogger("triopycos.node")

Kind = Literal["task", "channel", "rps"]

#: Asks a peer (the one at ``location``, or every peer when None) for a name:
#: ``RemoteOps.locate``.
RemoteLocate = Callable[[Kind, str, Location | None, float | None], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class NameStatistics:
    """A snapshot of how many names of each kind are registered."""

    tasks: int = 0
    channels: int = 0
    rps: int = 0


class NameRegistry:
    """The names of one node.  ``owner()`` is the node's name, for log lines."""

    def __init__(self, owner: Callable[[], str]) -> None:
        self._owner = owner
        self.by_kind: dict[Kind, dict[str, Any]] = {"task": {}, "channel": {}, "rps": {}}
        self._changed = trio.Event()

    def statistics(self) -> NameStatistics:
        names = self.by_kind
        return NameStatistics(len(names["task"]), len(names["channel"]), len(names["rps"]))

    def get(self, kind: Kind, name: str) -> Any:
        return self.by_kind[kind].get(name)

    def sorted(self, kind: Kind) -> tuple[str, ...]:
        return tuple(sorted(self.by_kind[kind]))

    def register(self, kind: Kind, name: str, obj: Any) -> int:
        names = self.by_kind[kind]
        current = names.get(name)
        if current is not None:
            if current is obj:
                return 0
            log.warning("%s name %r is already registered on %s", kind, name, self._owner())
            return -1
        names[name] = obj
        if obj._registered is None:  # a task's set is made on its first name
            obj._registered = set()
        obj._registered.add(name)
        self._changed.set()
        self._changed = trio.Event()
        return 0

    def unregister(self, kind: Kind, name: str, obj: Any) -> int:
        names = self.by_kind[kind]
        current = names.get(name)
        if current is None or current is not obj:
            return -1
        del names[name]
        if current._registered is not None:
            current._registered.discard(name)
        return 0

    def unregister_all(self, kind: Kind, obj: Any) -> None:
        """Every name of ``obj`` (a task that ended)."""
        for name in list(obj._registered or ()):
            self.unregister(kind, name, obj)

    async def wait_for(self, kind: Kind, name: str, timeout: float | None) -> Any:
        """The local registration of ``name``, waiting up to ``timeout`` for it."""
        names = self.by_kind[kind]
        found = names.get(name)
        if found is not None or not timeout:
            await trio.lowlevel.checkpoint()
            return found
        with trio.move_on_after(timeout):
            while found is None:
                await self._changed.wait()
                found = names.get(name)
        return found

    async def locate(
        self,
        kind: Kind,
        name: str,
        location: Location | None,
        timeout: float | None,
        *,
        here: Location,
        remote: RemoteLocate,
    ) -> Any:
        """``Task.locate`` and its kin: ``name`` at ``location`` (``here`` is this
        node's), or, without one, here or at any peer, whichever answers first."""
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, not {type(name).__name__}")
        if location is not None and not isinstance(location, Location):
            raise TypeError(f"location must be a Location, not {type(location).__name__}")
        check_timeout(timeout)
        if location is None and timeout is None:
            # As pycos: with no location and no timeout, wait until it appears here
            # or at any peer (peers that appear meanwhile included).
            timeout = math.inf
        if location is not None and location != here:
            return await remote(kind, name, location, timeout)
        found = self.by_kind[kind].get(name)
        if found is not None or location is not None:
            await trio.lowlevel.checkpoint()
            return found if found is not None else await self.wait_for(kind, name, timeout)
        # Here or at any peer, whichever answers first.
        async with trio.open_nursery() as nursery:
            answers: list[Any] = []

            async def look(search: Callable[[], Awaitable[Any]]) -> None:
                answer = await search()
                if answer is not None and not answers:
                    answers.append(answer)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(look, lambda: self.wait_for(kind, name, timeout))
            nursery.start_soon(look, lambda: remote(kind, name, None, timeout))
        return answers[0] if answers else None
