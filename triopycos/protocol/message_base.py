"""The base classes of the peer session's messages (``messages.py`` has the table of
every kind), and the session's own: ``Reply``, ``Ping``, ``Pong``, ``Bye``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from . import wire
from .wire import Kind, MalformedMessage, NotByHand
from .wire import uint as _uint

__all__ = [
    "BYE",
    "PING",
    "PONG",
    "Bye",
    "Encode",
    "IsReference",
    "Message",
    "OneWay",
    "Ping",
    "Pong",
    "Reply",
    "Request",
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
