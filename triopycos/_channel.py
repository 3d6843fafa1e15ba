"""``Channel``: publish/subscribe to tasks and (hierarchically) other channels.

Cycles: channels may subscribe to each other in any pattern, on any nodes, and a
message still reaches each channel at most once per send.  A message forwarded from
one channel to another carries the id of its send and the number of channels it has
passed (also on the wire), and a channel that has already handled that send drops
it (``_send_ids.py``): so a cycle of subscriptions (of any length, across nodes) ends
the forwarding where it closes, and a channel that several paths reach handles the
send once.  Refusing such subscriptions instead would need the whole graph, which no
single node knows (and two subscribes at once on two nodes could each close a cycle
that neither sees).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeAlias

import trio
import trio_util

from ._entity import Entity
from ._holds import involves
from ._send_ids import MAX_HOPS, SeenSends, new_send_id
from ._task import Task
from ._task_arguments import check_timeout
from ._threads import from_any_thread, get_ident
from .protocol.codec import Ref
from .values import Location

__all__ = ["Channel"]

log = logging.getLogger("triopycos.channel")

Subscriber: TypeAlias = "Task | Channel"
Transform = Callable[[str, Any], Any]

# What ``_transformed`` gives for a message its transform dropped (None is a message).
_DROPPED: Any = object()


class Channel(Entity):
    """``Channel(name, transform=None)`` on the current node.

    ``transform(name, message)`` may change a message, or drop it by returning None.
    """

    __slots__ = (
        "__weakref__",
        "_channels",
        "_closed",
        "_registered",
        "_seen",
        "_subscribed",
        "_subscribers",
        "_transform",
    )

    def __init__(self, name: str, transform: Transform | None = None) -> None:
        from ._node import current_node

        if not isinstance(name, str) or not name:
            raise TypeError(f"channel name must be a non-empty str, not {name!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, not {type(transform).__name__}")
        node = current_node()
        self._bind(node, name)
        self._transform = transform
        # Subscriber -> the peer that asked for it (None: this node's code), in the
        # order added; a dict, so a peer's requests cost a lookup each, not a scan.
        self._subscribers: dict[Subscriber, bytes | None] = {}
        self._channels = 0  # how many subscribers are channels (a send needs an id)
        self._seen: SeenSends | None = None  # sends handled lately, once forwarded to
        self._subscribed = trio_util.RepeatedEvent()  # set on each new subscriber
        self._registered: set[str] = set()
        self._closed = False
        if node._thread_id != get_ident():  # a plain thread: the node's set is its own
            node._thread.call(node._channels.add, self)
        else:
            node._channels.add(self)

    _kind = "channel"

    def _init_reference(self, ref: Ref) -> None:
        self._closed = False

    def __eq__(self, other: object) -> bool:
        # Two local channels are the same only if they are one object (names of
        # unregistered channels need not be unique); references compare by name.
        if isinstance(other, Channel) and self._local and other._local:
            return self is other
        return super().__eq__(other)

    __hash__ = Entity.__hash__

    def __repr__(self) -> str:
        return f"Channel({self._name!r})@{self._location}"

    # -- subscribers --------------------------------------------------------------

    async def subscribe(self, subscriber: Subscriber, timeout: float | None = None) -> int:
        """Add a task or channel as subscriber: 0, or -1 (closed channel, or the
        channel itself)."""
        _check_subscriber(subscriber)
        check_timeout(timeout)
        if not self._local:
            return await self._node._remote.channel_subscribe(
                self, subscriber, timeout, subscribe=True
            )
        await trio.lowlevel.checkpoint()
        return self._add_subscriber(subscriber, None)

    def _add_subscriber(self, subscriber: Subscriber, asked_by: bytes | None) -> int:
        """``subscribe`` on this (local) channel; ``asked_by``: the peer that asks
        (None for this node's own code), which may hold only so many (see
        ``_holds.py``)."""
        if self._closed:
            return -1
        if subscriber is self:
            log.warning("channel %r cannot subscribe to itself", self._name)
            return -1
        subscribers = self._subscribers
        if subscriber not in subscribers:
            if asked_by is not None or not subscriber._local:
                holds = self._node._remote.holds
                if asked_by is not None and not holds.admit(asked_by):
                    return -1
                holds.add(self, subscriber, asked_by)
            subscribers[subscriber] = asked_by
            if isinstance(subscriber, Channel):
                self._channels += 1
            self._subscribed.set()
        return 0

    async def unsubscribe(self, subscriber: Subscriber, timeout: float | None = None) -> int:
        """Remove a subscriber: 0, or -1 if it was not subscribed."""
        _check_subscriber(subscriber)
        check_timeout(timeout)
        if not self._local:
            return await self._node._remote.channel_subscribe(
                self, subscriber, timeout, subscribe=False
            )
        await trio.lowlevel.checkpoint()
        if subscriber not in self._subscribers:
            return -1
        self._remove(subscriber)
        return 0

    # -- messages -----------------------------------------------------------------

    def _transformed(self, message: Any) -> Any:
        """The message as the transform returns it; ``_DROPPED`` if the transform
        dropped it (returned None) or failed."""
        assert self._transform is not None
        try:
            message = self._transform(self._name, message)
        except Exception:
            log.warning(
                "transform of channel %r failed; message dropped", self._name, exc_info=True
            )
            return _DROPPED
        return _DROPPED if message is None else message

    @from_any_thread
    def send(self, message: Any) -> int:
        """Send ``message`` to every current subscriber: 0, or -1 if closed."""
        return self._send(message)

    def _send(self, message: Any) -> int:
        """``send`` in the node's own thread (the library's internal callers are)."""
        return self._forward(message, None, 0)

    def _forward(self, message: Any, sent: bytes | None, hops: int) -> int:
        """Send ``message``: of the send ``sent`` (an id, see ``_send_ids.py``), after
        ``hops`` channels, if other channels forwarded it here; else a new send."""
        if not self._local:
            return self._node._remote.channel_send(self, message, sent, hops)
        if self._closed:
            return -1
        if sent is not None and not self._first(sent, hops):
            return 0  # handled already, by another path or round a cycle
        if self._transform is not None:
            message = self._transformed(message)
            if message is _DROPPED:
                return 0
        if not self._subscribers:
            return 0
        if sent is None and self._channels:
            sent = self._new_send()
        hops += 1
        # A snapshot: a transform on the way may change the subscriptions meanwhile.
        subscribers = list(self._subscribers)
        gone: list[Subscriber] | None = None  # (made only if one is gone)
        # Remote subscribers first: a message that cannot be encoded fails at the
        # first of them, before anyone has it (no encoding just to check).
        for remote in (True, False):
            for subscriber in subscribers:
                if subscriber._local is not remote and not self._offer(
                    subscriber, message, sent, hops
                ):
                    if gone is None:
                        gone = []
                    gone.append(subscriber)
        if gone is not None:
            for subscriber in gone:
                self._drop(subscriber)
        return 0

    def _offer(self, subscriber: Subscriber, message: Any, sent: bytes | None, hops: int) -> bool:
        """Give ``message`` to one subscriber (``sent``, ``hops``: its send and the
        channels it has passed, this one included); False if the subscriber is gone
        for good."""
        if isinstance(subscriber, Channel):
            return subscriber._forward(message, sent, hops) == 0
        if subscriber._local:
            # A live task refused it only because its mailbox is full: it stays.
            return subscriber._send(message) == 0 or subscriber._alive
        # A subscriber a peer asked for: on that peer's behalf (see _dials.py).
        asked_by = self._subscribers.get(subscriber)
        return self._node._remote.task_send(subscriber, message, asked_by) == 0

    def _first(self, sent: bytes, hops: int) -> bool:
        """Whether this channel is to handle the forwarded send ``sent`` (it had not,
        and the message has passed fewer than ``MAX_HOPS`` channels)."""
        if hops >= MAX_HOPS:
            return False
        seen = self._seen
        if seen is None:
            seen = self._seen = SeenSends()
        return seen.first(sent)

    def _new_send(self) -> bytes:
        """An id for a send of this channel that it forwards to other channels."""
        sent = new_send_id(self._node._node_id)
        self._first(sent, 0)  # a cycle back here ends here
        return sent

    async def deliver(self, message: Any, timeout: float | None = None, n: int = 0) -> int:
        """Deliver to every subscriber once there are at least ``n`` (waiting up to
        ``timeout``); returns how many tasks got it (0 if too few subscribed in
        time, -1 if the channel is closed)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, not {n!r}")
        check_timeout(timeout)
        return await self._deliver(message, timeout, n, None, 0)

    async def _deliver(
        self,
        message: Any,
        timeout: float | None,
        n: int,
        sent: bytes | None,
        hops: int,
        for_peer: bytes | None = None,
    ) -> int:
        """``deliver`` of a message of the send ``sent``, after ``hops`` channels, if
        other channels forwarded it here (as ``_forward``).  ``for_peer``: for a
        remote channel, the peer on whose behalf (see ``_dials.py``)."""
        if not self._local:
            return await self._node._remote.channel_deliver(
                self, message, timeout, n, sent, hops, for_peer
            )
        if self._closed:
            await trio.lowlevel.checkpoint()
            return -1
        if sent is not None and not self._first(sent, hops):
            await trio.lowlevel.checkpoint()
            return 0  # handled already, by another path or round a cycle: nobody new
        if self._transform is not None:
            message = self._transformed(message)
            if message is _DROPPED:
                await trio.lowlevel.checkpoint()
                return 0
        deadline = trio.current_time() + (math.inf if timeout is None else timeout)
        with trio.move_on_at(deadline):
            while len(self._subscribers) < n and not self._closed:
                await self._subscribed.wait()
        if len(self._subscribers) < n or self._closed:
            return 0 if not self._closed else -1
        self._check_travels(message)

        count = 0
        slow: list[Subscriber] = []
        for subscriber in list(self._subscribers):
            if isinstance(subscriber, Task) and subscriber._local:
                if subscriber._send(message) == 0:
                    count += 1
                elif not subscriber._alive:
                    self._drop(subscriber)
                # (alive with a full mailbox: refused this time, still subscribed)
            else:
                slow.append(subscriber)
        if slow:
            # Channels and remote tasks answer in their own time: ask them together,
            # all within what is left of the timeout.
            counts: list[int] = []
            if sent is None and self._channels:
                sent = self._new_send()
            hops += 1

            async def one(subscriber: Subscriber) -> None:
                # (A subscriber a peer asked for: on its behalf, see _dials.py.)
                asked_by = self._subscribers.get(subscriber)
                if isinstance(subscriber, Channel):
                    got = await subscriber._deliver(message, remaining, 0, sent, hops, asked_by)
                else:
                    got = await remote.task_deliver(subscriber, message, remaining, asked_by)
                if got < 0:
                    self._drop(subscriber)
                else:
                    counts.append(got)

            remote = self._node._remote
            remaining = None if timeout is None else max(0.0, deadline - trio.current_time())
            with trio.move_on_at(deadline):
                async with trio.open_nursery() as nursery:
                    for subscriber in slow:
                        nursery.start_soon(one, subscriber)
            count += sum(counts)
        else:
            await trio.lowlevel.checkpoint()
        return count

    def _check_travels(self, message: Any) -> None:
        """With subscribers on other nodes, refuse a message that cannot be encoded
        before anyone gets it (TypeError/ValueError), rather than half-way."""
        if any(not s._local for s in self._subscribers):
            self._node._codec.encode(message)

    def _drop_node(self, node_id: bytes) -> None:
        """Forget every subscriber living on, or asked for by, the node ``node_id``:
        it was lost (``_holds.PeerHolds.lost``)."""
        subscribers = self._subscribers
        holds = self._node._remote.holds
        for subscriber, asked_by in [
            (s, a) for s, a in subscribers.items() if involves(s, a, node_id)
        ]:
            del subscribers[subscriber]
            if isinstance(subscriber, Channel):
                self._channels -= 1
            holds.remove(self, subscriber, asked_by)

    def _drop(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._remove(subscriber)
            log.debug("subscriber %r of %r is gone; dropped", subscriber, self)

    def _remove(self, subscriber: Subscriber) -> None:
        asked_by = self._subscribers.pop(subscriber)
        if isinstance(subscriber, Channel):
            self._channels -= 1
        if asked_by is not None or not subscriber._local:
            self._node._remote.holds.remove(self, subscriber, asked_by)

    # -- names --------------------------------------------------------------------

    @from_any_thread
    def register(self, name: str | None = None) -> int:
        """Register so other nodes can locate it (default: its own name): 0 / -1."""
        if not self._local or self._closed:
            return -1
        if name is None:
            name = self._name
        if not isinstance(name, str) or not name:
            raise TypeError(f"channel name must be a non-empty str, not {name!r}")
        return self._node._names.register("channel", name, self)

    @from_any_thread
    def unregister(self, name: str | None = None) -> int:
        """Remove the registration: 0, or -1 if it was not registered."""
        if not self._local:
            return -1
        return self._node._names.unregister("channel", self._name if name is None else name, self)

    @staticmethod
    async def locate(
        name: str, location: Location | None = None, timeout: float | None = None
    ) -> Channel | None:
        """A reference to the channel registered as ``name``, or None (as Task.locate)."""
        from ._node import current_node

        found = await current_node()._locate("channel", name, location, timeout)
        assert found is None or isinstance(found, Channel)
        return found

    @from_any_thread
    def close(self) -> None:
        """Unregister, drop every subscriber and refuse further messages."""
        if not self._local:
            return
        for name in list(self._registered):
            self._node._names.unregister("channel", name, self)
        for subscriber in list(self._subscribers):
            self._remove(subscriber)
        self._closed = True
        self._subscribed.set()


def _check_subscriber(subscriber: object) -> None:
    if not isinstance(subscriber, (Task, Channel)):
        raise TypeError(
            f"a subscriber must be a Task or a Channel, not {type(subscriber).__name__}"
        )
