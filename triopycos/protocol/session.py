"""``PeerSession``: one authenticated peer session as a state machine, sans-IO.

Modelled on h11's ``Connection`` (and wsproto's ``events()``): the driver
(``services/peer.py``) feeds it what the stream gives (``receive_data``), takes the
events out (``events()``, or ``next_event()`` one at a time), and writes the bytes
that ``send``, ``send_request``, ``send_reply`` and ``data_to_send`` return.
Nothing here does I/O or awaits::

    session = PeerSession(codec, max_frame_size=limit, data=leftover)
    frame = session.send(TaskSend(task_id, "hi"))           # bytes for the stream
    request_id, frame = session.send_request(Echo(), waiter)
    session.receive_data(await stream.receive_some())
    for event in session.events():                          # see "Events"
        ...
    stream.send_all(session.data_to_send())                 # PONGs, failure replies

States::

    OPEN --send(Bye())---------------------------------------> SAID_BYE
    OPEN, SAID_BYE --the peer's BYE read--------------------> PEER_LEFT
    OPEN, SAID_BYE --receive_data(b"") at a frame boundary--> CLOSED
    any --a frame over the limit, a frame that is not a
          non-empty list, the stream ending mid-frame--------> ERROR

Rules:

* Sending: only in OPEN.  ``send``, ``send_request`` and ``send_reply`` raise
  ``SessionClosed`` in any other state (after a BYE the peer reads nothing more)
  and ``MessageTooLarge`` for a frame over ``max_frame_size``; ``TypeError`` or
  ``ValueError`` from the codec (a value that cannot travel) go to the caller.  A
  refused message changes nothing (no request id is used up, no state changes).
* Requests: ``send_request`` numbers each request (1, 2, ... per session) and keeps
  the caller's ``waiter`` until its reply is read: then an ``Answer(waiter,
  value)`` event, once.  A reply to an id not waiting (the caller gave up:
  ``forget``; or the peer made it up) is dropped without a word.  Requests still
  waiting when the session ends are the driver's to fail (``abandon``).  A request
  received carries the peer's ``request_id``: answer it with ``send_reply``.
* Receiving, in OPEN and SAID_BYE: each frame is read when the event before it has
  been handled (with ``events(runs=True)``, consecutive task messages for one task
  are read together, as one ``TaskMessages`` event), and its shape checked against
  its kind (``messages.py``).  An
  undecodable frame is ``Undecodable``; a list without the shape of its kind is
  ``Malformed`` and, if it was a request with an int id, answered with the kind's
  ``FAILURE`` (in ``data_to_send``).  Both are dropped and the session goes on:
  the framing is intact, only that message is lost.  A frame that is not a
  non-empty list, or that breaks the framing, is a ``ProtocolError``: ERROR.
* PING is answered with PONG (in ``data_to_send``, while sending is allowed) and
  PONG is consumed: neither is an event.  Any frame proves the peer alive; timing
  that is the driver's.
* The peer's BYE is returned as ``Bye`` and is the last event: PEER_LEFT ignores
  whatever comes after it.
* CLOSED (the peer ended its stream): events already buffered are still returned;
  ``receive_data`` with bytes raises ``RuntimeError``.
* ERROR is final: receiving and sending raise ``ProtocolError``.

Events: a ``OneWay`` or ``Request`` message for the node, and the session's own
(``SessionEvent``: ``Answer``, ``Malformed``, ``Undecodable``; and ``Bye``).
``next_event`` returns None when there is none (more data is needed, or nothing
more will come).

Values that refer to the node's own objects (a monitor, a subscriber) are checked
with ``is_reference``, given by the node: this layer does not know its classes.

The hot kinds (a task message, a delivery, a reply) have their envelope written and
read by hand (``wire.py`` says why); the result is the same as the codec's, byte
for byte and event for event (``test_session.py`` checks both).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final, Generic, NoReturn, TypeAlias, TypeVar

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
    ChannelSend,
    IsReference,
    Message,
    OneWay,
    Ping,
    Pong,
    Reply,
    Request,
    TaskDeliver,
    TaskResult,
    TaskSend,
    kind_name,
)
from .printable import describe
from .session_events import (
    Answer,
    Malformed,
    MessageTooLarge,
    SendRefused,
    SessionClosed,
    SessionEvent,
    SessionState,
    TaskMessages,
    Undecodable,
)
from .wire import TASK_ID_LIMIT, MalformedMessage, NotByHand
from .wire import read_text as _read_text
from .wire import read_uint as _read_uint
from .wire import uint as _uint

__all__ = [
    "Answer",
    "Event",
    "Malformed",
    "MessageTooLarge",
    "PeerSession",
    "SendRefused",
    "SessionClosed",
    "SessionEvent",
    "SessionState",
    "TaskMessages",
    "Undecodable",
    "references_are_refs",
]

W = TypeVar("W")


def _run_event(task_id: int, messages: list[Any]) -> TaskSend | TaskMessages:
    if len(messages) == 1:
        return _new(TaskSend, (task_id, messages[0]))
    return _new(TaskMessages, (task_id, messages))


Event: TypeAlias = "Message | TaskMessages | Answer[W] | Malformed | Undecodable"


def references_are_refs(value: object, kind: str) -> bool:
    """The reference test of a session whose codec resolves no references."""
    return type(value) is Ref and value.kind == kind


_new: Final = tuple.__new__
_from_bytes: Final = int.from_bytes
_join: Final = b"".join
# A frame header (4 bytes), an array head and a kind (as one 16-bit word), and an
# unsigned int's head and value: a task message's or a reply's envelope (_framed).
_head_0: Final = struct.Struct(">IHB").pack
_head_8: Final = struct.Struct(">IHBB").pack
_head_16: Final = struct.Struct(">IHBH").pack
_head_32: Final = struct.Struct(">IHBI").pack
_head_64: Final = struct.Struct(">IHBQ").pack
_TASK_SEND: Final = TaskSend.KIND
_TASK_DELIVER: Final = TaskDeliver.KIND
_TASK_RESULT: Final = TaskResult.KIND
_REPLY: Final = Reply.KIND
# Kinds whose envelope is read by hand (TASK_SEND too, inline in events()).
_BY_HAND: Final = frozenset((_REPLY, _TASK_DELIVER, _TASK_RESULT, ChannelSend.KIND))
_BY_THE_CODEC: Final = object()
# The most task messages one TaskMessages event holds: a bound on what is decoded
# ahead of being handled (a read holds a few thousand small frames).
_RUN: Final = 1024


class PeerSession(Generic[W]):
    """One peer session; see the module docstring for its rules.  ``W`` is the type
    of the waiters the driver parks requests with."""

    __slots__ = (
        "_decode",
        "_decode_into",
        "_decoder",
        "_encode",
        "_error",
        "_is_reference",
        "_max_frame_size",
        "_next_request",
        "_output",
        "_receiving",
        "_sending",
        "_spans",
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
        self._decode_into = codec.decode_into
        self._decoder = FrameDecoder(max_frame_size)
        self._spans = self._decoder.spans()
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
        if type(message) is TaskSend:
            return self.send_task(message.task_id, message.message)
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

    def send_task(self, task_id: int, message: object) -> bytes:
        """``send(TaskSend(task_id, message))``, without making the TaskSend: the hot
        path, by hand (the frame header and the envelope, which TaskSend's
        ``_encode`` says the general way, in one struct; only the payload through
        the codec)."""
        if not self._sending:
            self._refuse()
        body = self._encode(message)
        if type(task_id) is int and 0 <= task_id < 0x1_0000:  # (_framed, inline)
            size = len(body) + (3 if task_id < 24 else 4 if task_id < 0x100 else 5)
            if size > self._max_frame_size:
                raise MessageTooLarge(size, self._max_frame_size)
            if task_id < 24:
                return _head_0(size, 0x8301, task_id) + body
            if task_id < 0x100:
                return _head_8(size, 0x8301, 0x18, task_id) + body
            return _head_16(size, 0x8301, 0x19, task_id) + body
        return self._framed(0x8301, task_id, body) or self._whole(TaskSend(task_id, message))

    def send_reply(self, request_id: int, value: object) -> bytes:
        """``send(Reply(request_id, value))``, without making the Reply: the frame of
        the answer to the peer's request ``request_id``."""
        if not self._sending:
            self._refuse()
        framed = self._framed(0x8300, request_id, self._encode(value))
        return framed or self._whole(Reply(request_id, value))

    def _framed(self, word: int, number: object, body: bytes) -> bytes:
        """The frame of ``[kind, number, payload]`` (``word``: the array head and the
        kind), ``body`` being the payload's encoding; b"" for a number that is not an
        int in 0 .. 2**64 - 1 (``_whole``'s)."""
        if type(number) is not int or not 0 <= number < 0x1_0000_0000_0000_0000:
            return b""
        limit = self._max_frame_size
        if number < 24:
            if len(body) + 3 > limit:
                raise MessageTooLarge(len(body) + 3, limit)
            return _head_0(len(body) + 3, word, number) + body
        if number < 0x100:
            if len(body) + 4 > limit:
                raise MessageTooLarge(len(body) + 4, limit)
            return _head_8(len(body) + 4, word, 0x18, number) + body
        if number < 0x1_0000:
            if len(body) + 5 > limit:
                raise MessageTooLarge(len(body) + 5, limit)
            return _head_16(len(body) + 5, word, 0x19, number) + body
        if number < 0x1_0000_0000:
            if len(body) + 7 > limit:
                raise MessageTooLarge(len(body) + 7, limit)
            return _head_32(len(body) + 7, word, 0x1A, number) + body
        if len(body) + 11 > limit:
            raise MessageTooLarge(len(body) + 11, limit)
        return _head_64(len(body) + 11, word, 0x1B, number) + body

    def _whole(self, message: Message) -> bytes:
        """The frame of ``message``'s wire list, all of it through the codec."""
        return self._raw_frame(message._wire(0))

    def send_request(self, request: Request, waiter: W) -> tuple[int, bytes]:
        """Number ``request`` and return its id and frame; its reply will come back
        as ``Answer(waiter, value)``."""
        if not self._sending:
            self._refuse()
        request_id = self._next_request + 1
        if type(request) is TaskDeliver and request_id < 0x1_0000:
            # The hot request by hand, as ``send`` does a task message: the frame
            # header, the envelope and the request id in one struct (the task id
            # through ``wire.uint``), only the payload through the codec.
            task_id = request.task_id
            body = self._encode(request.message)
            try:
                tail = _uint(task_id) + body
            except NotByHand:
                tail = b""
            if tail:
                if request_id < 24:
                    size = len(tail) + 3
                    frame = _head_0(size, 0x8402, request_id) + tail
                elif request_id < 0x100:
                    size = len(tail) + 4
                    frame = _head_8(size, 0x8402, 0x18, request_id) + tail
                else:
                    size = len(tail) + 5
                    frame = _head_16(size, 0x8402, 0x19, request_id) + tail
                if size > self._max_frame_size:
                    raise MessageTooLarge(size, self._max_frame_size)
                self._next_request = request_id
                self._waiting[request_id] = waiter
                return request_id, frame
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
            self._output.append(self.send_reply(request_id, value))

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
        return next(self.events(), None)

    def events(self, *, runs: bool = False) -> Iterator[Event[W]]:
        """Every event the data received so far makes, in order, each read only when
        the one before has been handled (wsproto's ``events()``; ``next_event`` one at
        a time, as h11).  The driver's loop: one generator per read, not a call per
        message.

        ``runs=True``: consecutive task messages for the same task, as far as they
        are already buffered (up to ``_RUN`` of them), come as one ``TaskMessages``
        event instead of a ``TaskSend`` each: the frames of a run are read together,
        before the event is handled (reading one cannot depend on handling another:
        none of them changes the session).  A run of one is still a ``TaskSend``.
        The caller takes every event (a run's frames are taken from the stream as
        one): the driver's reader does."""
        if not self._receiving:
            if self._error is not None:
                self._raise_error()
            if self._state is SessionState.PEER_LEFT:
                return
        decode = self._decode
        decode_into = self._decode_into
        take_run = self._decoder.take_run
        try:
            # The decoder's one generator, kept across reads (``for`` runs it fastest;
            # None: it needs more data).
            for span in self._spans:
                if span is None:
                    return
                buf, start, end = span
                # The hot kinds (a task message, a delivery, a reply, a result, a
                # channel message) have their envelope (an array, the kind, the ints
                # or the name) read by hand, as send writes it, and only the payload
                # goes through the codec, which would read the same bytes the same
                # way.  Anything else, or any envelope these lines do not cover, is
                # the codec's job, whole.
                if end - start > 3:
                    kind = buf[start + 1]
                    if kind == _TASK_SEND and buf[start] == 0x83:
                        task_id = buf[start + 2]
                        at = start + 3
                        if task_id >= 24:  # (the common heads inline: a call less)
                            if task_id == 0x18 and end - start > 4:
                                task_id, at = buf[start + 3], start + 4
                            elif task_id == 0x19 and end - start > 5:
                                task_id, at = buf[start + 3] << 8 | buf[start + 4], start + 5
                            elif task_id == 0x1A and end - start > 7:
                                task_id, at = _from_bytes(buf[start + 3 : start + 7]), start + 7
                            else:
                                task_id = 0  # not by hand
                        if task_id:
                            try:
                                payload = decode(buf[at:end])
                            except DecodeError as exc:
                                yield Undecodable(str(exc))
                                continue
                            if runs and end < len(buf):
                                # The frames after it with the same envelope: one
                                # event for the lot, one check of the envelope.
                                # (Nothing more buffered: no call, as for a request
                                # and its reply.)
                                raws = take_run(buf[start:at], _RUN)
                                if raws:
                                    values: list[object] = [payload]
                                    done = 0
                                    while failed := decode_into(raws, done, values):
                                        # An undecodable one splits the run.
                                        done, error = failed
                                        if values:
                                            yield _run_event(task_id, values)
                                        yield Undecodable(str(error))
                                        values = []
                                        done += 1
                                    if values:
                                        yield _run_event(task_id, values)
                                    continue
                            yield _new(TaskSend, (task_id, payload))
                            continue
                    elif kind in _BY_HAND:
                        event = self._read_by_hand(kind, buf, start, end)
                        if event is not _BY_THE_CODEC:
                            if event is not None:
                                yield event
                            continue
                try:
                    message = decode(buf[start:end])
                except DecodeError as exc:
                    yield Undecodable(str(exc))
                    continue
                if type(message) is not list or not message:
                    self._fail(ProtocolError("message is not a non-empty list"))
                event = self._event(message, message[0])
                if event is not None:
                    yield event
                    if not self._receiving:
                        return  # the peer's BYE: nothing after it is read
        except ProtocolError as exc:
            if exc is not self._error:
                self._fail(exc)  # the framing's: a frame over the limit
            raise

    def _read_by_hand(self, kind: int, buf: bytes, start: int, end: int) -> Any:
        """The event of a reply, a delivery, a task result or a channel message whose
        envelope is read by hand (None: a reply nobody waits for);
        ``_BY_THE_CODEC`` if these lines do not cover it."""
        first = buf[start]
        decode = self._decode
        try:
            if kind in (_REPLY, _TASK_DELIVER):
                if first != (0x83 if kind == _REPLY else 0x84):
                    return _BY_THE_CODEC
                # Both start with the request id (the common heads inline, as for a
                # task message: a call less).
                request_id = buf[start + 2]
                if request_id < 24:
                    at = start + 3
                elif request_id == 0x18:
                    request_id, at = buf[start + 3], start + 4
                elif request_id == 0x19 and end - start > 5:
                    request_id, at = buf[start + 3] << 8 | buf[start + 4], start + 5
                else:
                    request_id, at = _read_uint(buf, start + 2, end)
                if kind == _REPLY:
                    value = decode(buf[at:end])
                    waiter = self._waiting.pop(request_id, None)
                    return None if waiter is None else _new(Answer, (waiter, value))
                if at < end and buf[at] < 24:
                    task_id, at = buf[at], at + 1
                else:
                    task_id, at = _read_uint(buf, at, end)
                if not 0 < task_id < TASK_ID_LIMIT:
                    return _BY_THE_CODEC  # (its reason comes from the codec's way)
                return _new(TaskDeliver, (task_id, decode(buf[at:end]), request_id))
            if first != 0x83:  # a task result, or a channel message not forwarded
                return _BY_THE_CODEC
            if kind == _TASK_RESULT:
                task_id, at = _read_uint(buf, start + 2, end)
                if not 0 < task_id < TASK_ID_LIMIT:
                    return _BY_THE_CODEC
                return _new(TaskResult, (task_id, decode(buf[at:end])))
            name, at = _read_text(buf, start + 2, end)
            return _new(ChannelSend, (name, decode(buf[at:end]), None, 0))
        except NotByHand:
            return _BY_THE_CODEC
        except DecodeError as exc:
            return Undecodable(str(exc))

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
            return None if waiter is None else _new(Answer, (waiter, event.value))
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
