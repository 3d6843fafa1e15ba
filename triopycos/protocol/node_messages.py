"""Messages about the rest of a node: its channels (send, deliver, subscribe), its
names (locate), its RPSs (call) and itself (status, echo); the table of every kind
is in ``messages.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from . import wire
from .message_base import Encode, IsReference, OneWay, Request, _new
from .printable import describe
from .wire import LOCATABLE, Kind, MalformedMessage, NotByHand
from .wire import text as _text

__all__ = [
    "ChannelDeliver",
    "ChannelSend",
    "ChannelSubscribe",
    "ChannelUnsubscribe",
    "Echo",
    "Locate",
    "RpsCall",
    "StatusRequest",
]


class _ChannelSend(NamedTuple):
    name: str
    message: Any
    sent: bytes | None = None  # the send's id, if other channels forwarded it
    hops: int = 0  # the channels it has passed (0 unless forwarded)


class ChannelSend(OneWay, _ChannelSend):
    """``message`` for every subscriber of the channel registered as ``name``."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.CHANNEL_SEND

    def _wire(self, request_id: int) -> list[Any]:
        if self.sent is not None:
            return [Kind.CHANNEL_SEND, self.name, self.message, [self.sent, self.hops]]
        return [Kind.CHANNEL_SEND, self.name, self.message]

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        if self.sent is None:
            try:
                return b"\x83\x08" + _text(self.name), encode(self.message)
            except NotByHand:
                pass
        return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> ChannelSend:
        if len(message) not in (3, 4):
            raise MalformedMessage("a channel message is a name, a message and its send's mark")
        name = wire.name(message[1], "channel name")
        sent, hops = wire.forwarded(message[3]) if len(message) == 4 else wire.NOT_FORWARDED
        return _new(ChannelSend, (name, message[2], sent, hops))


class _Locate(NamedTuple):
    what: str  # one of LOCATABLE
    name: str
    timeout: float | None
    request_id: int = 0


class Locate(Request, _Locate):
    """Answered with a reference to the ``what`` registered as ``name`` (waiting up to
    ``timeout`` for it), or None."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.LOCATE
    FAILURE: ClassVar[object] = None

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Locate:
        request_id = wire.request_id(message, 5)
        what, name = message[2], message[3]
        if type(what) is not str or what not in LOCATABLE or type(name) is not str:
            raise MalformedMessage(f"cannot locate {describe(what)} {describe(name)}")
        return _new(Locate, (what, name, wire.timeout(message[4]), request_id))


class _ChannelDeliver(NamedTuple):
    name: str
    message: Any
    timeout: float | None
    n: int
    sent: bytes | None = None  # the send's id, if other channels forwarded it
    hops: int = 0  # the channels it has passed (0 unless forwarded)
    request_id: int = 0


class ChannelDeliver(Request, _ChannelDeliver):
    """Deliver ``message`` through the channel ``name`` once it has ``n``
    subscribers: answered with how many got it."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.CHANNEL_DELIVER
    FAILURE: ClassVar[object] = 0

    def _wire(self, request_id: int) -> list[Any]:
        fields = [Kind.CHANNEL_DELIVER, request_id, self.name, self.message, self.timeout, self.n]
        if self.sent is not None:
            fields.append([self.sent, self.hops])
        return fields

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> ChannelDeliver:
        if len(message) not in (6, 7):
            raise MalformedMessage("a channel delivery has 5 or 6 fields")
        request_id = wire.request_id(message[:6], 6)
        name = wire.name(message[2], "channel name")
        timeout = wire.timeout(message[4])
        n = message[5]
        if type(n) is not int or n < 0:
            raise MalformedMessage(f"n is {describe(n)}")
        sent, hops = wire.forwarded(message[6]) if len(message) == 7 else wire.NOT_FORWARDED
        return _new(ChannelDeliver, (name, message[3], timeout, n, sent, hops, request_id))


class _Subscription(NamedTuple):
    name: str
    subscriber: Any  # a task or a channel: the node's own classes (see IsReference)
    timeout: float | None
    request_id: int = 0


def _parse_subscription(message: list[Any], is_reference: IsReference) -> tuple[Any, ...]:
    request_id = wire.request_id(message, 5)
    name = wire.name(message[2], "channel name")
    subscriber = message[3]
    if not (is_reference(subscriber, "task") or is_reference(subscriber, "channel")):
        raise MalformedMessage(f"the subscriber is {describe(subscriber)}")
    return (name, subscriber, wire.timeout(message[4]), request_id)


class ChannelSubscribe(Request, _Subscription):
    """Subscribe ``subscriber`` to the channel ``name``: answered 0, or -1."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.CHANNEL_SUBSCRIBE
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> ChannelSubscribe:
        return _new(ChannelSubscribe, _parse_subscription(message, is_reference))


class ChannelUnsubscribe(Request, _Subscription):
    """Unsubscribe ``subscriber`` from the channel ``name``: answered 0, or -1."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.CHANNEL_UNSUB
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> ChannelUnsubscribe:
        return _new(ChannelUnsubscribe, _parse_subscription(message, is_reference))


class _RpsCall(NamedTuple):
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    monitors: list[Any]  # tasks: the node's own class (see IsReference)
    links: Sequence[Any] = ()  # tasks of the caller's node (a list when received)
    request_id: int = 0


class RpsCall(Request, _RpsCall):
    """Start a task of the RPS registered as ``name``: answered with the task, or an
    exception saying why not.  ``links``: tasks of the calling node to link with the
    new task before it runs (on the wire only when there are some)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.RPS_CALL
    FAILURE: ClassVar[object] = None

    def _wire(self, request_id: int) -> list[Any]:
        fields = [Kind.RPS_CALL, request_id, self.name, self.args, self.kwargs, self.monitors]
        if self.links:
            fields.append(list(self.links))
        return fields

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> RpsCall:
        request_id = wire.request_id(message, 7 if len(message) == 7 else 6)
        name = wire.name(message[2], "RPS name")
        args, kwargs, monitors = message[3], message[4], message[5]
        links = message[6] if len(message) == 7 else ()
        if (
            type(args) is not list
            or type(kwargs) is not dict
            or not all(type(k) is str for k in kwargs)
            or type(monitors) is not list
            or not all(is_reference(m, "task") for m in monitors)
            or type(links) not in (list, tuple)  # (a tuple: the absent field)
            or not all(is_reference(t, "task") for t in links)
        ):
            raise MalformedMessage(f"malformed call of RPS {describe(name)}")
        return _new(RpsCall, (name, args, kwargs, monitors, links, request_id))


class _Plain(NamedTuple):
    request_id: int = 0


class StatusRequest(Request, _Plain):
    """Answered with the node's status (see ``_node_status.py``)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.NODE_STATUS
    FAILURE: ClassVar[object] = None

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> StatusRequest:
        return _new(StatusRequest, (wire.request_id(message, 2),))


class Echo(Request, _Plain):
    """Answered True: a round trip."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.ECHO
    FAILURE: ClassVar[object] = False

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Echo:
        return _new(Echo, (wire.request_id(message, 2),))


#: Every message class by its kind.
