"""``PeerSession``: one authenticated peer session as a state machine, sans-IO.

Modelled on h11's ``Connection``: the driver (``services/peer.py``) feeds it what
the stream gives (``receive_data``), takes events out (``next_event``), and writes
the bytes that ``send``, ``send_request`` and ``data_to_send`` return.  Nothing
here does I/O or awaits::

    session = PeerSession(codec, max_frame_size=limit, data=leftover)
    frame = session.send(TaskSend(task_id, "hi"))           # bytes for the stream
    request_id, frame = session.send_request(Echo(), waiter)
    session.receive_data(await stream.receive_some())
    while (event := session.next_event()) is not None:
        ...                                                 # see "Events"
    stream.send_all(session.data_to_send())                 # PONGs, failure replies

States::

    OPEN --send(Bye())---------------------------------------> SAID_BYE
    OPEN, SAID_BYE --the peer's BYE read--------------------> PEER_LEFT
    OPEN, SAID_BYE --receive_data(b"") at a frame boundary--> CLOSED
    any --a frame over the limit, a frame that is not a
          non-empty list, the stream ending mid-frame--------> ERROR

Rules:

* Sending: only in OPEN.  ``send`` and ``send_request`` raise ``SessionClosed``
  in any other state (after BYE nothing more is read by the peer) and
  ``MessageTooLarge`` for a frame over ``max_frame_size``; ``TypeError`` or
  ``ValueError`` from the codec (a value that cannot travel) go to the caller.
  Nothing is half-sent: a refused message changes no state.
* Requests: ``send_request`` numbers each request (1, 2, ... per session) and keeps
  the caller's ``waiter`` until its reply is read: then ``next_event`` returns
  ``Answer(waiter, value)``, once.  A reply to an id not waiting (the caller gave
  up: ``forget``; or the peer made it up) is dropped without a word.  Requests
  still waiting when the session ends are the driver's to fail (``abandon``).
* Receiving, in OPEN and SAID_BYE: every frame is decoded and its shape checked
  against its kind (``messages.py``).  An undecodable frame is ``Undecodable``;
  a list without the shape of its kind is ``Malformed`` and, if it was a request
  with an int id, answered with the kind's ``FAILURE`` (in ``data_to_send``).
  Both are dropped, and the session goes on: framing is intact, only that message
  is lost.  A frame that is not a non-empty list, or that breaks the framing, is a
  ``ProtocolError``: ERROR.
* PING is answered with PONG (in ``data_to_send``) and PONG is consumed: neither is
  an event.  Any frame proves the peer alive; timing that is the driver's.
* The peer's BYE is returned as ``Bye`` and is the last event: PEER_LEFT ignores
  whatever comes after it.
* CLOSED (the peer ended its stream): events already buffered are still returned,
  then ``None``; ``receive_data`` with bytes raises ``RuntimeError``.
* ERROR is final: every call raises ``ProtocolError``.

Events (``next_event``): a ``OneWay`` or ``Request`` message for the node (a
request carries the peer's ``request_id``, to answer with ``send(Reply(...))``),
``Answer``, ``Bye``, ``Malformed``, ``Undecodable``; ``None`` when it needs more
data (or, in PEER_LEFT and CLOSED, when nothing more will come).

Values that refer to the node's own objects (a monitor, a subscriber) are checked
with ``is_reference``, given by the node: this layer does not know its classes.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Generic, NamedTuple, NoReturn, TypeAlias, TypeVar

from .codec import Codec, Ref
from .errors import DecodeError, ProtocolError
from .framing import FrameDecoder, encode_frame_header
from .messages import (
    BYE,
    PING,
    PONG,
    REQUEST_TYPES,
    TYPES,
    Bye,
    IsReference,
    Message,
    OneWay,
    Ping,
    Pong,
    Reply,
    Request,
    TaskSend,
    kind_name,
)
from .printable import describe
from .wire import TASK_ID_LIMIT, MalformedMessage

__all__ = [
    "Answer",
    "Event",
    "Malformed",
    "MessageTooLarge",
    "PeerSession",
    "SendRefused",
    "SessionClosed",
    "SessionState",
    "Undecodable",
]

W = TypeVar("W")


class Answer(NamedTuple, Generic[W]):
    """The reply to one of our requests: the ``waiter`` given to ``send_request``."""

    waiter: W
    value: Any


class Malformed(NamedTuple):
    """A message without the shape of its kind was dropped (a request among them was
    answered with its failure value).  ``reason`` quotes the peer only through
    ``printable.describe``."""

    kind: str  # the kind's name: "TASK_SEND", "kind 99", "unknown"
    reason: str


class Undecodable(NamedTuple):
    """A frame that is not valid CBOR (or holds what the codec refuses) was dropped."""

    reason: str


Event: TypeAlias = "Message | Answer[W] | Malformed | Undecodable"


class SessionState(enum.Enum):
    OPEN = "open"
    SAID_BYE = "said bye"
    PEER_LEFT = "peer left"
    CLOSED = "closed"
    ERROR = "error"


class SendRefused(Exception):
    """A message the session does not send (it changed nothing)."""


class SessionClosed(SendRefused):
    """Sending after a BYE, or after the session ended."""


class MessageTooLarge(SendRefused):
    """A message whose frame would exceed ``max_frame_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the frame limit of {limit} bytes")
        self.size = size
        self.limit = limit


def references_are_refs(value: object, kind: str) -> bool:
    """The reference test of a session whose codec resolves no references."""
    return type(value) is Ref and value.kind == kind


_new: Final = tuple.__new__
_join: Final = b"".join
_TASK_SEND: Final = TaskSend.KIND


class PeerSession(Generic[W]):
    """One peer session; see the module docstring for its rules.  ``W`` is the type
    of the waiters the driver parks requests with."""

    __slots__ = (
        "_decode",
        "_decoder",
        "_encode",
        "_error",
        "_is_reference",
        "_max_frame_size",
        "_next_request",
        "_output",
        "_receiving",
        "_sending",
        "_state",
        "_waiting",
    )

    def __init__(
        self,
        codec: Codec,
        *,
        max_frame_size: int,
        is_reference: IsReference = references_are_refs,
        data: bytes = b"",
    ) -> None:
        self._encode = codec.encode
        self._decode = codec.decode
        self._decoder = FrameDecoder(max_frame_size)
        self._max_frame_size = max_frame_size
        self._is_reference = is_reference
        self._next_request = 0
        self._waiting: dict[int, W] = {}
        self._output: list[bytes] = []
        self._state = SessionState.OPEN
        # The hot paths test one bool each, not the state.
        self._sending = True
        self._receiving = True
        self._error: ProtocolError | None = None
        if data:
            self.receive_data(data)

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def waiting(self) -> int:
        """Requests sent and not answered (nor forgotten) yet."""
        return len(self._waiting)

    # -- sending ------------------------------------------------------------------

    def send(self, message: OneWay | Reply) -> bytes:
        """The frame of a one-way message or a reply, to be written as it is."""
        if not self._sending:
            self._refuse()
        head, body = message._encode(self._encode, 0)
        size = len(head) + len(body)
        if size > self._max_frame_size:
            raise MessageTooLarge(size, self._max_frame_size)
        if type(message) is Bye:
            self._sending = False
            self._state = SessionState.SAID_BYE
        return _join((encode_frame_header(size), head, body))

    def send_request(self, request: Request, waiter: W) -> tuple[int, bytes]:
        """Number ``request`` and return its id and frame; its reply will come back
        as ``Answer(waiter, value)``."""
        if not self._sending:
            self._refuse()
        request_id = self._next_request + 1
        head, body = request._encode(self._encode, request_id)
        size = len(head) + len(body)
        if size > self._max_frame_size:
            raise MessageTooLarge(size, self._max_frame_size)
        self._next_request = request_id
        self._waiting[request_id] = waiter
        return request_id, _join((encode_frame_header(size), head, body))

    def ping(self) -> bytes:
        """A PING (the peer answers PONG: something to hear on an idle session)."""
        return self.send(PING)

    def forget(self, request_id: int) -> None:
        """The caller of request ``request_id`` stopped waiting (timed out, cancelled,
        or its frame could not be written): a late reply is dropped."""
        self._waiting.pop(request_id, None)

    def abandon(self) -> list[W]:
        """The waiters of every request still unanswered; the session forgets them."""
        waiters = list(self._waiting.values())
        self._waiting.clear()
        return waiters

    def data_to_send(self) -> bytes:
        """Frames the session made itself (PONGs, failure replies to malformed
        requests), to be written after whatever was sent before; b"" if none."""
        if not self._output:
            return b""
        data = _join(self._output)
        self._output.clear()
        return data

    def send_raw(self, fields: list[Any]) -> bytes:
        """The frame of any list, unchecked: what a faulty or hostile peer could send
        (for tests and tools; the node never sends one)."""
        if not self._sending:
            self._refuse()
        return self._raw_frame(fields)

    def send_raw_request(self, kind: int, fields: list[Any], waiter: W) -> tuple[int, bytes]:
        """``send_raw`` of ``[kind, request id, *fields]``, waiting for its reply."""
        if not self._sending:
            self._refuse()
        request_id = self._next_request + 1
        frame = self._raw_frame([kind, request_id, *fields])
        self._next_request = request_id
        self._waiting[request_id] = waiter
        return request_id, frame

    def _raw_frame(self, fields: list[Any]) -> bytes:
        payload = self._encode(fields)
        if len(payload) > self._max_frame_size:
            raise MessageTooLarge(len(payload), self._max_frame_size)
        return encode_frame_header(len(payload)) + payload

    def _refuse(self) -> NoReturn:
        if self._error is not None:
            self._raise_error()
        raise SessionClosed(f"the session is {self._state.value}: nothing more is sent")

    def _answer(self, request_id: int, value: object) -> None:
        if self._sending:
            self._output.append(self.send(Reply(request_id, value)))

    # -- receiving ----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the stream; ``b""`` says the peer ended it (CLOSED)."""
        if not self._receiving:
            if self._error is not None:
                self._raise_error()
            if self._state is SessionState.PEER_LEFT:
                return  # after its BYE, nothing the peer says is read
            if data:
                raise RuntimeError("receive_data() after the stream ended")
            return
        try:
            if data:
                self._decoder.receive_data(data)
            else:
                self._decoder.eof()
                self._state = SessionState.CLOSED
                self._sending = self._receiving = False
        except ProtocolError as exc:
            self._fail(exc)

    def next_event(self) -> Event[W] | None:
        """The next event, or None (see the module docstring)."""
        if not self._receiving:
            if self._error is not None:
                self._raise_error()
            if self._state is SessionState.PEER_LEFT:
                return None
        next_frame = self._decoder.next_frame
        decode = self._decode
        while True:
            try:
                frame = next_frame()
            except ProtocolError as exc:
                self._fail(exc)
            if frame is None:
                return None
            try:
                message = decode(frame)
            except DecodeError as exc:
                return Undecodable(str(exc))
            if type(message) is not list or not message:
                self._fail(ProtocolError("message is not a non-empty list"))
            kind = message[0]
            # The hot path: a task message with a good shape, checked inline.
            if type(kind) is int and kind == _TASK_SEND and len(message) == 3:
                task_id = message[1]
                if type(task_id) is int and 0 < task_id < TASK_ID_LIMIT:
                    return _new(TaskSend, (task_id, message[2]))
            event = self._event(message, kind)
            if event is not None:
                return event

    def _event(self, message: list[Any], kind: object) -> Event[W] | None:
        """The event for one decoded message; None if the session consumed it."""
        if type(kind) is not int:
            return Malformed("unknown", f"its kind is {describe(kind)}")
        cls = TYPES.get(kind)
        if cls is None:
            return Malformed(kind_name(kind), "unknown kind")
        try:
            event: Message = cls._parse(message, self._is_reference)
        except MalformedMessage as exc:
            request = REQUEST_TYPES.get(kind)
            if request is not None and len(message) > 1 and type(message[1]) is int:
                self._answer(message[1], request.FAILURE)
            return Malformed(kind_name(kind), str(exc))
        if cls is Reply:
            assert isinstance(event, Reply)
            waiter = self._waiting.pop(event.request_id, None)
            return None if waiter is None else Answer(waiter, event.value)
        if cls is Ping:
            if self._sending:
                self._output.append(self.send(PONG))
            return None
        if cls is Pong:
            return None
        if cls is Bye:
            self._state = SessionState.PEER_LEFT
            self._sending = self._receiving = False
            return BYE
        return event

    # -- failing ------------------------------------------------------------------

    def _fail(self, error: ProtocolError) -> NoReturn:
        self._error = error
        self._state = SessionState.ERROR
        self._sending = self._receiving = False
        self._output.clear()
        raise error

    def _raise_error(self) -> NoReturn:
        assert self._error is not None
        raise ProtocolError(f"the session failed earlier: {self._error}") from self._error
