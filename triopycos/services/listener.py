"""The listener service: accepts connections on the node's listeners and hands each
to the peer supervisor at once.

It accepts as trio's ``serve_listeners`` does:

* one accept loop per listener; the service owns the listeners and closes them all
  when it ends;
* an accept that fails for lack of something that comes back when connections close
  (descriptors, memory, socket buffers: ``EMFILE``, ``ENFILE``, ``ENOMEM``,
  ``ENOBUFS``, see ``transport.errors.OutOfCapacity``) is tried again after
  ``CAPACITY_DELAY`` seconds: refusing for a moment lets the node's own connections
  finish and give them back;
* any other failure of ``accept`` means the listener is broken for good, and ends the
  service (and so the node, with a ``ServiceError`` that says where and why),
  instead of spinning on it forever;
* a listener closed under the loop (``trio.ClosedResourceError``: the node is
  stopping, or its transport was killed) ends that loop quietly.

A run of capacity errors is one warning when it starts and one line when accepting
works again (with how many there were), not a line every ``CAPACITY_DELAY``.

What to do with a connection is the caller's: ``accepted(stream)`` is called in the
accept loop itself, so it must not wait (the peer supervisor admits or evicts it
and starts its handshake in its own nursery).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from ..transport.errors import AcceptFailed, OutOfCapacity, accept

__all__ = ["CAPACITY_DELAY", "ListenerService", "ListenerStatistics"]

log = logging.getLogger("triopycos.listener")

#: Seconds between tries while the system is out of capacity (trio's own value).
CAPACITY_DELAY = 0.1


@dataclass(frozen=True, slots=True)
class ListenerStatistics:
    """A snapshot of the listener service's counters."""

    listeners: int = 0
    accepted: int = 0
    #: Accepts that failed for lack of descriptors, memory or buffers (each
    #: followed by a pause of ``CAPACITY_DELAY``).
    capacity_errors: int = 0


class ListenerService:
    """Accepts on ``listeners`` (it owns them: they are closed when ``serve`` ends)
    and passes every new connection to ``accepted``.  ``where(listener)`` names a
    listener's address for log lines and errors."""

    def __init__(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        accepted: Callable[[trio.abc.Stream], None],
        where: Callable[[trio.abc.Listener[trio.abc.Stream]], str],
    ) -> None:
        self._listeners = list(listeners)
        self._accepted = accepted
        self._where = where
        self._count = 0
        self._capacity_errors = 0

    def statistics(self) -> ListenerStatistics:
        return ListenerStatistics(len(self._listeners), self._count, self._capacity_errors)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for listener in self._listeners:
                    nursery.start_soon(self._accept_loop, listener)
                task_status.started()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close every listener (again, harmlessly, if ``serve`` did)."""
        with trio.CancelScope(shield=True):
            for listener in self._listeners:
                await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.abc.Listener[trio.abc.Stream]) -> None:
        failed = 0  # capacity errors in a row
        while True:
            try:
                stream = await accept(listener)
            except OutOfCapacity as exc:
                failed += 1
                self._capacity_errors += 1
                if failed == 1:
                    log.warning(
                        "accepting on %s failed: %s; trying again every %s s",
                        self._where(listener),
                        exc.reason,
                        CAPACITY_DELAY,
                    )
                await trio.sleep(CAPACITY_DELAY)
                continue
            except trio.ClosedResourceError:
                # Closed under us (the node is stopping, or its transport was
                # killed, as the virtual network's crashes do): nothing to accept.
                return
            except AcceptFailed as exc:
                raise AcceptFailed(
                    f"cannot accept connections on {self._where(listener)}: {exc.reason}",
                    exc.detail,
                ) from exc.__cause__
            if failed:
                log.warning(
                    "accepting on %s again, after %d failed attempt(s)",
                    self._where(listener),
                    failed,
                )
                failed = 0
            self._count += 1
            self._accepted(stream)
