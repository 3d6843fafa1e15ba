"""Messages of an authenticated peer session: one small frozen class per kind.

Every application frame is one codec-encoded list: the kind (an int), then the
fields in the order of the table.  Requests carry a request id right after the
kind, chosen by the sender; the answer is a ``REPLY`` with the same id.  Ids are per
connection and per direction, so both sides may use the same numbers at once.

=================  ===================  ===============================================
kind               class                fields after the kind (and the request id)
=================  ===================  ===============================================
REPLY              ``Reply``            request id, value
TASK_SEND          ``TaskSend``         task id, message
TASK_DELIVER       ``TaskDeliver``      task id, message; answered 1 / 0
TASK_TERMINATE     ``TaskTerminate``    task id
TASK_MONITOR       ``TaskMonitor``      task id, monitor (a task); answered 0 / -1
TASK_FINISH        ``TaskFinish``       task id, timeout or None; answered with the
                                        task's value
TASK_ALIVE         ``TaskAlive``        task id; answered with a bool
LOCATE             ``Locate``           "task"/"channel"/"rps", name, timeout or None;
                                        answered with a reference or None
CHANNEL_SEND       ``ChannelSend``      channel name, message[, forwarded]
CHANNEL_DELIVER    ``ChannelDeliver``   channel name, message, timeout, n
                                        [, forwarded]; answered with a count
CHANNEL_SUBSCRIBE  ``ChannelSubscribe`` channel name, subscriber, timeout; 0 / -1
CHANNEL_UNSUB      ``ChannelUnsubscribe`` (the same); 0 / -1
PING / PONG        ``Ping`` / ``Pong``  (nothing); the session answers PING itself
BYE                ``Bye``              (nothing): the sender is leaving
RPS_CALL           ``RpsCall``          RPS name, args, kwargs, monitors[, links];
                                        answered with the new task, or an exception
                                        saying why
TASK_RESULT        ``TaskResult``       task id, value: pushed to the caller of an RPS
                                        when the task it started ends
NODE_STATUS        ``StatusRequest``    (nothing); answered with a map: the node's name,
                                        locations, registered names, peers, statistics
                                        and version (see ``_node_status.py``)
ECHO               ``Echo``             (nothing); answered True (``Pycos.ping``)
TASK_LINK          ``TaskLink``         task id, partner (a task of the sender's node):
                                        link them; answered 0 / -1
TASK_UNLINK        ``TaskUnlink``       task id, partner, exit (a ``MonitorStatus`` of
                                        the partner, or None): the link is gone; with an
                                        exit, because the partner ended
=================  ===================  ===============================================

``forwarded`` (only on a message one channel forwards to another): ``[send id,
hops]``, the id of the send it belongs to (bytes, at most ``MAX_SEND_ID``: the
sending node's id and a counter) and how many channels it has passed (1 to
``MAX_HOPS``); the classes hold them as ``sent`` (None: not forwarded) and ``hops``.
A channel that has handled that send already drops it, so a cycle of subscriptions
cannot loop a message and each channel handles a send once (see ``_send_ids.py``).

The classes are named tuples: frozen, with slots, and the cheapest objects to make
and read, which matters because one is made for every message on the hot path.
``KIND`` is the wire number; a request class has ``FAILURE``, its answer when it
cannot be served (and what the caller sees if the peer goes away first).  A
request's ``request_id`` is the peer's id on a request received; on one we send it
is 0, and the session numbers it.

The wire form of each class is here too: ``_parse`` checks a received list's shape
(raising ``MalformedMessage``; the checks of single values are in ``wire.py``) and
``_encode`` writes one, the envelope of the hot kinds by hand (``wire.py`` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from ..values import MonitorStatus
from . import wire
from .printable import describe
from .wire import (
    LOCATABLE,
    MAX_HOPS,
    MAX_SEND_ID,
    TASK_ID_LIMIT,
    Kind,
    MalformedMessage,
    NotByHand,
    kind_name,
)
from .wire import text as _text
from .wire import uint as _uint

__all__ = [
    "LOCATABLE",
    "MAX_HOPS",
    "MAX_SEND_ID",
    "REQUEST_TYPES",
    "TASK_ID_LIMIT",
    "TYPES",
    "Bye",
    "ChannelDeliver",
    "ChannelSend",
    "ChannelSubscribe",
    "ChannelUnsubscribe",
    "Echo",
    "Kind",
    "Locate",
    "MalformedMessage",
    "Message",
    "OneWay",
    "Ping",
    "Pong",
    "Reply",
    "Request",
    "RpsCall",
    "StatusRequest",
    "TaskAlive",
    "TaskDeliver",
    "TaskFinish",
    "TaskLink",
    "TaskMonitor",
    "TaskResult",
    "TaskSend",
    "TaskTerminate",
    "TaskUnlink",
    "kind_name",
]


#: ``is_reference(value, kind)``: whether a decoded value is a reference to a task
#: or a channel (``kind`` "task" or "channel").  The node's own classes come from
#: above this layer, so the session is given the test (``session.py``).
IsReference = Callable[[object, str], bool]
#: The codec's ``encode``.
Encode = Callable[[object], bytes]

# -- the base classes ------------------------------------------------------------------


class Message:
    """Any message of the session.  ``KIND`` is its number on the wire."""

    __slots__ = ()
    KIND: ClassVar[int]

    # Named tuples compare as tuples: a message is equal only to one of its kind.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _tuple_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return _tuple_hash(self)

    def _wire(self, request_id: int) -> list[Any]:
        """The list that goes on the wire."""
        raise NotImplementedError

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        """The frame's payload in two parts (joined by the session): written by hand,
        and by the codec."""
        return b"", encode(self._wire(request_id))


class OneWay(Message):
    """A message that gets no answer."""

    __slots__ = ()

    def _wire(self, request_id: int) -> list[Any]:
        return [self.KIND, *self]  # type: ignore[misc]


class Request(Message):
    """A message that gets exactly one ``Reply``: its value, or ``FAILURE``."""

    __slots__ = ()
    FAILURE: ClassVar[object]
    if TYPE_CHECKING:

        @property
        def request_id(self) -> int: ...

    def _wire(self, request_id: int) -> list[Any]:
        # The request id is the last field and the first on the wire.
        return [self.KIND, request_id, *self[:-1]]  # type: ignore[index]


_new: Final = tuple.__new__
_tuple_eq: Final[Callable[[object, object], bool]] = tuple.__eq__  # type: ignore[assignment]
_tuple_hash: Final[Callable[[object], int]] = tuple.__hash__  # type: ignore[assignment]


# -- one-way messages ------------------------------------------------------------------


class _TaskSend(NamedTuple):
    task_id: int
    message: Any


class TaskSend(OneWay, _TaskSend):
    """``message`` for task ``task_id``'s mailbox."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_SEND

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            return b"\x83\x01" + _uint(self.task_id), encode(self.message)
        except NotByHand:
            return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskSend:
        if len(message) != 3:
            raise MalformedMessage("a task message is a task id (an int) and a message")
        return _new(TaskSend, (wire.task_id(message[1]), message[2]))


class _TaskTerminate(NamedTuple):
    task_id: int


class TaskTerminate(OneWay, _TaskTerminate):
    """End task ``task_id``."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_TERMINATE

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskTerminate:
        wire.check_count(message, 2)
        return _new(TaskTerminate, (wire.task_id(message[1]),))


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


class _TaskResult(NamedTuple):
    task_id: int
    value: Any


class TaskResult(OneWay, _TaskResult):
    """How task ``task_id``, started by the receiver's RPS call, ended."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_RESULT

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            return b"\x83\x10" + _uint(self.task_id), encode(self.value)
        except NotByHand:
            return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskResult:
        wire.check_count(message, 3)
        return _new(TaskResult, (wire.task_id(message[1]), message[2]))


class _Empty(NamedTuple):
    pass


class Ping(OneWay, _Empty):
    """Are you there?  (The session answers ``Pong`` itself.)"""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.PING

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Ping:
        wire.check_count(message, 1)
        return PING


class Pong(OneWay, _Empty):
    """The answer to ``Ping``."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.PONG

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Pong:
        wire.check_count(message, 1)
        return PONG


class Bye(OneWay, _Empty):
    """The sender is leaving: the last message it sends."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.BYE

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Bye:
        wire.check_count(message, 1)
        return BYE


PING: Final = Ping()
PONG: Final = Pong()
BYE: Final = Bye()


class _Reply(NamedTuple):
    request_id: int
    value: Any


class Reply(Message, _Reply):
    """The answer to the request ``request_id``."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.REPLY

    def _wire(self, request_id: int) -> list[Any]:
        return [Kind.REPLY, self.request_id, self.value]

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            return b"\x83\x00" + _uint(self.request_id), encode(self.value)
        except NotByHand:
            return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> Reply:
        if len(message) != 3 or type(message[1]) is not int:
            raise MalformedMessage("a reply is a request id and a value")
        return _new(Reply, (message[1], message[2]))


# -- requests --------------------------------------------------------------------------


class _TaskDeliver(NamedTuple):
    task_id: int
    message: Any
    request_id: int = 0


class TaskDeliver(Request, _TaskDeliver):
    """Put ``message`` in task ``task_id``'s mailbox: answered 1 once it is there."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_DELIVER
    FAILURE: ClassVar[object] = 0

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            head = b"\x84\x02" + _uint(request_id) + _uint(self.task_id)
        except NotByHand:
            return b"", encode(self._wire(request_id))
        return head, encode(self.message)

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskDeliver:
        request_id = wire.request_id(message, 4)
        return _new(TaskDeliver, (wire.task_id(message[2]), message[3], request_id))


class _TaskMonitor(NamedTuple):
    task_id: int
    monitor: Any  # a task: the node's own class (see IsReference)
    request_id: int = 0


class TaskMonitor(Request, _TaskMonitor):
    """Tell ``monitor`` how task ``task_id`` ends: answered 0, or -1."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_MONITOR
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskMonitor:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        if not is_reference(message[3], "task"):
            raise MalformedMessage(f"the monitor is {describe(message[3])}")
        return _new(TaskMonitor, (task_id, message[3], request_id))


class _TaskLink(NamedTuple):
    task_id: int
    partner: Any  # a Task of the sending node
    request_id: int = 0


class TaskLink(Request, _TaskLink):
    """Link task ``task_id`` with ``partner``, a task of the sending node: answered
    0, or -1 (no such task here, or no room for the link)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_LINK
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskLink:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        if not is_reference(message[3], "task"):
            raise MalformedMessage(f"the partner is {describe(message[3])}")
        return _new(TaskLink, (task_id, message[3], request_id))


class _TaskUnlink(NamedTuple):
    task_id: int
    partner: Any  # a Task of the sending node
    exit: MonitorStatus | None  # the partner's exit, if it ended


class TaskUnlink(OneWay, _TaskUnlink):
    """The link of task ``task_id`` with ``partner`` is gone: unlinked, or, with
    ``exit``, because the partner ended so."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_UNLINK

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskUnlink:
        wire.check_count(message, 4)
        task_id = wire.task_id(message[1])
        partner, exit = message[2], message[3]
        if not is_reference(partner, "task"):
            raise MalformedMessage(f"the partner is {describe(partner)}")
        if exit is not None and not (
            type(exit) is MonitorStatus and is_reference(exit.info, "task")
        ):
            raise MalformedMessage(f"the exit is {describe(exit)}")
        return _new(TaskUnlink, (task_id, partner, exit))


class _TaskFinish(NamedTuple):
    task_id: int
    timeout: float | None
    request_id: int = 0


class TaskFinish(Request, _TaskFinish):
    """Answered with task ``task_id``'s value once it ends (None after ``timeout``)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_FINISH
    FAILURE: ClassVar[object] = None

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskFinish:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        return _new(TaskFinish, (task_id, wire.timeout(message[3]), request_id))


class _TaskAlive(NamedTuple):
    task_id: int
    request_id: int = 0


class TaskAlive(Request, _TaskAlive):
    """Answered True if task ``task_id`` is running."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_ALIVE
    FAILURE: ClassVar[object] = False

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskAlive:
        request_id = wire.request_id(message, 3)
        return _new(TaskAlive, (wire.task_id(message[2]), request_id))


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
    links: list[Any] = []  # noqa: RUF012 (never mutated) tasks of the caller's node
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
            fields.append(self.links)
        return fields

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> RpsCall:
        request_id = wire.request_id(message, 7 if len(message) == 7 else 6)
        name = wire.name(message[2], "RPS name")
        args, kwargs, monitors = message[3], message[4], message[5]
        links = message[6] if len(message) == 7 else []
        if (
            type(args) is not list
            or type(kwargs) is not dict
            or not all(type(k) is str for k in kwargs)
            or type(monitors) is not list
            or not all(is_reference(m, "task") for m in monitors)
            or type(links) is not list
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
TYPES: Final[dict[int, Any]] = {
    cls.KIND: cls
    for cls in (
        Reply,
        TaskSend,
        TaskDeliver,
        TaskTerminate,
        TaskMonitor,
        TaskFinish,
        TaskAlive,
        Locate,
        ChannelSend,
        ChannelDeliver,
        ChannelSubscribe,
        ChannelUnsubscribe,
        Ping,
        Pong,
        Bye,
        RpsCall,
        TaskResult,
        StatusRequest,
        Echo,
        TaskLink,
        TaskUnlink,
    )
}
#: The request classes by kind.
REQUEST_TYPES: Final[dict[int, type[Request]]] = {
    kind: cls for kind, cls in TYPES.items() if issubclass(cls, Request)
}
