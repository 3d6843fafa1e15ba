"""The peer session (``protocol/session.py``) alone, sans-IO: two sessions talk
through byte strings, no trio, no node.

Every kind round-trips; request ids are numbered and replies matched; PING is
answered by the session; BYE, the end of the stream and errors move it through its
states; a malformed message of every kind gets the documented outcome; hostile and
mutated frames give a valid event or the documented error, in bounded time and
memory; and the envelopes written and read by hand are the codec's own bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cbor_strategies import cbor_items, frame, hostile_cbor, mutated
from cbor_strategies import head as cbor_head
from hypothesis import given
from hypothesis import strategies as st
from test_codec import values
from test_fuzz_decoders import FUZZ, bounded

from triopycos import Location, MonitorStatus
from triopycos.protocol.codec import Codec, Ref
from triopycos.protocol.errors import DecodeError, FrameTooLarge, ProtocolError
from triopycos.protocol.messages import (
    BYE,
    LOCATABLE,
    MAX_HOPS,
    MAX_SEND_ID,
    REQUEST_TYPES,
    TYPES,
    Bye,
    ChannelDeliver,
    ChannelSend,
    ChannelSubscribe,
    ChannelUnsubscribe,
    Echo,
    Kind,
    Locate,
    Message,
    OneWay,
    Ping,
    Pong,
    Reply,
    Request,
    RpsCall,
    StatusRequest,
    TaskAlive,
    TaskDeliver,
    TaskFinish,
    TaskLink,
    TaskMonitor,
    TaskResult,
    TaskSend,
    TaskTerminate,
    TaskUnlink,
    kind_name,
)
from triopycos.protocol.session import (
    Answer,
    Malformed,
    MessageTooLarge,
    PeerSession,
    SessionClosed,
    SessionEvent,
    SessionState,
    Undecodable,
)

CODEC = Codec()
LIMIT = 1 << 20
TASK = Ref("task", b"\x01" * 16, 7, "worker", Location("127.0.0.1", 9706))
CHANNEL = Ref("channel", b"\x01" * 16, "news", "news", Location("127.0.0.1", 9706))

ONE_WAY: list[OneWay] = [
    TaskSend(1, "hi"),
    TaskSend(2**63 - 1, {"deep": [1, (2, 3)], "k": b"v"}),
    TaskTerminate(5),
    ChannelSend("news", ("item", 1)),
    ChannelSend("news", 1, b"send-1", 2),
    TaskResult(7, None),
    TaskResult(8, ("a", "tuple")),
    TaskUnlink(3, TASK, None),
    TaskUnlink(3, TASK, MonitorStatus(TASK, ValueError, "boom")),
]
REQUESTS: list[Request] = [
    TaskDeliver(3, b"x" * 5000),
    TaskMonitor(3, TASK),
    TaskFinish(3, None),
    TaskFinish(3, 2.5),
    TaskAlive(3),
    Locate("task", "server", None),
    Locate("rps", "inc", 1.0),
    ChannelDeliver("news", "m", None, 0),
    ChannelDeliver("news", "m", 2.0, 3, b"send-2", MAX_HOPS),
    ChannelSubscribe("news", TASK, None),
    ChannelUnsubscribe("news", CHANNEL, 1.5),
    RpsCall("inc", [1], {"step": 2}, [TASK]),
    RpsCall("inc", [1], {}, [], [TASK]),
    TaskLink(3, TASK),
    StatusRequest(),
    Echo(),
]


def sessions() -> tuple[PeerSession[str], PeerSession[str]]:
    return PeerSession(CODEC, max_frame_size=LIMIT), PeerSession(CODEC, max_frame_size=LIMIT)


def feed(session: PeerSession[Any], data: bytes) -> list[object]:
    session.receive_data(data)
    return list(session.events())


def wire(frames: bytes) -> list[Any]:
    """The lists in a run of frames, as the codec reads them."""
    found = []
    while frames:
        (size,) = struct.unpack_from(">I", frames)
        found.append(CODEC.decode(frames[4 : 4 + size]))
        frames = frames[4 + size :]
    return found


# -- round trips ----------------------------------------------------------------------


def test_the_samples_cover_every_kind() -> None:
    kinds = {type(m) for m in [*ONE_WAY, *REQUESTS]} | {Reply, Ping, Pong, Bye}
    assert kinds == set(TYPES.values())


@pytest.mark.parametrize("message", ONE_WAY, ids=lambda m: type(m).__name__)
def test_one_way_messages_round_trip(message: OneWay) -> None:
    a, b = sessions()
    assert feed(b, a.send(message)) == [message]
    assert b.data_to_send() == b""  # nothing to answer


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda m: type(m).__name__)
def test_requests_round_trip_and_their_replies_come_back(request_: Request) -> None:
    a, b = sessions()
    request_id, data = a.send_request(request_, "the waiter")
    (received,) = feed(b, data)
    assert type(received) is type(request_)
    assert received == request_._replace(request_id=request_id)  # type: ignore[attr-defined]
    assert feed(a, b.send_reply(received.request_id, ["the", "answer"])) == [
        Answer("the waiter", ["the", "answer"])
    ]
    assert a.waiting == 0


def test_messages_are_equal_only_to_their_own_kind() -> None:
    assert TaskSend(1, 2) != TaskResult(1, 2) and TaskSend(1, 2) == TaskSend(1, 2)
    assert Ping() != Pong() and hash(TaskSend(1, 2)) == hash(TaskSend(1, 2))
    with pytest.raises(AttributeError):
        TaskSend(1, 2).task_id = 3  # type: ignore[misc]


# -- requests and replies -------------------------------------------------------------


def test_request_ids_count_up_and_replies_find_their_waiters_in_any_order() -> None:
    a, b = sessions()
    sent = [a.send_request(Echo(), f"waiter {i}") for i in range(3)]
    assert [request_id for request_id, _ in sent] == [1, 2, 3]
    for _, data in sent:
        feed(b, data)
    replies = b.send_reply(3, "c") + b.send_reply(1, "a") + b.send_reply(2, "b")
    assert feed(a, replies) == [
        Answer("waiter 2", "c"),
        Answer("waiter 0", "a"),
        Answer("waiter 1", "b"),
    ]
    # A second reply to the same request, and one to a request never made.
    assert feed(a, b.send_reply(1, "again") + b.send_reply(99, "?")) == []


def test_a_reply_after_forget_is_dropped_and_abandon_returns_the_rest() -> None:
    a, b = sessions()
    first, _ = a.send_request(Echo(), "gave up")
    a.send_request(Echo(), "still waiting")
    a.send_request(TaskAlive(1), "this one too")
    a.forget(first)
    assert feed(a, b.send_reply(first, True)) == []
    assert a.waiting == 2
    assert sorted(a.abandon()) == ["still waiting", "this one too"]
    assert a.waiting == 0 and a.abandon() == []


def test_a_refused_message_changes_nothing() -> None:
    a, _ = sessions()
    with pytest.raises(MessageTooLarge):
        a.send_request(TaskDeliver(1, b"x" * LIMIT), "w")
    with pytest.raises(TypeError):
        a.send_request(TaskDeliver(1, object()), "w")
    assert a.waiting == 0
    assert a.send_request(Echo(), "w")[0] == 1  # no id was used up
    tiny = PeerSession[str](CODEC, max_frame_size=1)  # below a BYE's two bytes
    with pytest.raises(MessageTooLarge):
        tiny.send(Bye())
    assert tiny.state is SessionState.OPEN


# -- PING and BYE ---------------------------------------------------------------------


def test_ping_is_answered_by_the_session_and_neither_is_an_event() -> None:
    a, b = sessions()
    assert feed(b, a.ping()) == []
    pong = b.data_to_send()
    assert wire(pong) == [[Kind.PONG]]
    assert b.data_to_send() == b""  # handed out once
    assert feed(a, pong) == [] and a.data_to_send() == b""


def test_bye_ends_sending_on_one_side_and_everything_on_the_other() -> None:
    a, b = sessions()
    a_request, data = a.send_request(Echo(), "w")
    data += a.send(Bye())
    assert a.state is SessionState.SAID_BYE
    with pytest.raises(SessionClosed):
        a.send(TaskSend(1, "after bye"))
    with pytest.raises(SessionClosed):
        a.send_request(Echo(), "w")
    # What follows the BYE on the wire is never read.
    events = feed(b, data + frame(CODEC.encode([Kind.TASK_SEND, 1, "ignored"])))
    assert [type(e) for e in events] == [Echo, Bye] and events[-1] is BYE
    assert b.state is SessionState.PEER_LEFT
    assert feed(b, frame(CODEC.encode([Kind.TASK_SEND, 1, "later"]))) == []
    with pytest.raises(SessionClosed):
        b.send_reply(a_request, True)
    # The side that said goodbye still reads (a reply may be on its way).
    assert feed(a, PeerSession(CODEC, max_frame_size=LIMIT).send_reply(a_request, 1)) == [
        Answer("w", 1)
    ]


# -- the end of the stream, and errors ------------------------------------------------


def test_the_end_of_the_stream_at_a_frame_boundary_closes_the_session() -> None:
    a, b = sessions()
    b.receive_data(a.send(TaskSend(1, "last")))
    b.receive_data(b"")
    assert b.state is SessionState.CLOSED
    assert list(b.events()) == [TaskSend(1, "last")]  # what was buffered still comes
    with pytest.raises(RuntimeError):
        b.receive_data(b"more")
    with pytest.raises(SessionClosed):
        b.send(TaskSend(1, "x"))


def test_the_end_of_the_stream_in_a_frame_is_an_error() -> None:
    a, b = sessions()
    b.receive_data(a.send(TaskSend(1, "cut"))[:-2])
    with pytest.raises(ProtocolError):
        b.receive_data(b"")
    assert b.state is SessionState.ERROR


@pytest.mark.parametrize(
    "payload",
    [CODEC.encode(5), CODEC.encode([]), CODEC.encode({"kind": 1}), CODEC.encode("list")],
    ids=["int", "empty list", "map", "text"],
)
def test_a_frame_that_is_not_a_non_empty_list_is_final(payload: bytes) -> None:
    a, b = sessions()
    b.send_request(Echo(), "w")
    with pytest.raises(ProtocolError, match="not a non-empty list"):
        feed(b, frame(payload) + a.send(TaskSend(1, "after")))
    assert b.state is SessionState.ERROR
    for call in (
        lambda: list(b.events()),
        lambda: b.receive_data(b"x"),
        lambda: b.send(TaskSend(1, "x")),
        lambda: b.send_request(Echo(), "w"),
    ):
        with pytest.raises(ProtocolError, match="failed earlier"):
            call()
    assert b.data_to_send() == b"" and b.abandon() == ["w"]


def test_a_frame_over_the_limit_is_refused_before_its_body_arrives() -> None:
    b = PeerSession[str](CODEC, max_frame_size=100)
    with pytest.raises(FrameTooLarge):
        feed(b, struct.pack(">I", 101))
    assert b.state is SessionState.ERROR


def test_an_undecodable_frame_is_dropped_and_the_session_goes_on() -> None:
    a, b = sessions()
    events = feed(b, frame(b"\x83\x01\x05\xc1") + a.send(TaskSend(1, "next")))
    assert [type(e) for e in events] == [Undecodable, TaskSend]
    assert events[1] == TaskSend(1, "next")


# -- malformed messages of every kind -------------------------------------------------

M = Kind
MALFORMED: list[tuple[str, list[Any]]] = [
    # name in the log, the message as a faulty peer would send it
    ("TASK_SEND", [M.TASK_SEND, "1", "m"]),
    ("TASK_SEND", [M.TASK_SEND, 1]),
    ("TASK_SEND", [M.TASK_SEND, 0, "m"]),
    ("TASK_SEND", [M.TASK_SEND, 2**63, "m"]),
    ("TASK_SEND", [M.TASK_SEND, True, "m"]),
    ("TASK_TERMINATE", [M.TASK_TERMINATE, 1, 2]),
    ("TASK_TERMINATE", [M.TASK_TERMINATE, -4]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, ["c"], "m"]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c"]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", "mark"]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x", MAX_HOPS + 1]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x", 0]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x", True]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", ["not bytes", 1]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"", 1]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x" * (MAX_SEND_ID + 1), 1]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x", 1, 2]]),
    ("CHANNEL_SEND", [M.CHANNEL_SEND, "c", "m", [b"x" * 8]]),
    ("TASK_RESULT", [M.TASK_RESULT, None, 1]),
    ("REPLY", [M.REPLY, "1", None]),
    ("REPLY", [M.REPLY, 1]),
    ("PING", [M.PING, "extra"]),
    ("PONG", [M.PONG, "extra"]),
    ("BYE", [M.BYE, "extra"]),
    ("kind 99", [99, 1, 2]),
    ("unknown", ["kind", 1]),
    ("unknown", [1.0, 1, "m"]),
    ("TASK_DELIVER", [M.TASK_DELIVER, 1, "1", "m"]),
    ("TASK_DELIVER", [M.TASK_DELIVER, 1, 1]),
    ("TASK_DELIVER", [M.TASK_DELIVER, "1", 1, "m"]),  # (no int id: nothing to answer)
    ("TASK_MONITOR", [M.TASK_MONITOR, 1, 1, "me"]),
    ("TASK_MONITOR", [M.TASK_MONITOR, 1, 1, CHANNEL]),
    ("TASK_FINISH", [M.TASK_FINISH, 1, 1, "x"]),
    ("TASK_FINISH", [M.TASK_FINISH, 1, 1, float("nan")]),
    ("TASK_FINISH", [M.TASK_FINISH, 1, 1, -1]),
    ("TASK_ALIVE", [M.TASK_ALIVE, 1, [1]]),
    ("LOCATE", [M.LOCATE, 1, "node", "n", None]),
    ("LOCATE", [M.LOCATE, 1, "task", 5, None]),
    ("LOCATE", [M.LOCATE, 1, "task", "n", True]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, 10**300, "m", None, 0]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, "c", "m", None, -1]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, "c", "m", None, 0, ["x"]]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, "c", "m", None, 0, ["x", 1]]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, "c", "m", None, 0, [b"x", "1"]]),
    ("CHANNEL_DELIVER", [M.CHANNEL_DELIVER, 1, "c", "m"]),
    ("CHANNEL_SUBSCRIBE", [M.CHANNEL_SUBSCRIBE, 1, "c", "sub", None]),
    ("CHANNEL_UNSUB", [M.CHANNEL_UNSUB, 1, "c", TASK, "soon"]),
    ("RPS_CALL", [M.RPS_CALL, 1, 5, [], {}, []]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", (), {}, []]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", [], {1: 2}, []]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", [], {}, ["not a task"]]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", [], {}, [], [CHANNEL]]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", [], {}, [], "links"]),
    ("RPS_CALL", [M.RPS_CALL, 1, "r", [], {}, [], [], []]),
    ("TASK_LINK", [M.TASK_LINK, 1, 1, "me"]),
    ("TASK_LINK", [M.TASK_LINK, 1, -1, TASK]),
    ("TASK_LINK", [M.TASK_LINK, 1, 1]),
    ("TASK_UNLINK", [M.TASK_UNLINK, 1, TASK]),
    ("TASK_UNLINK", [M.TASK_UNLINK, 1, CHANNEL, None]),
    ("TASK_UNLINK", [M.TASK_UNLINK, 1, TASK, "exit"]),
    ("TASK_UNLINK", [M.TASK_UNLINK, 1, TASK, MonitorStatus("info", ValueError, "x")]),
    ("NODE_STATUS", [M.NODE_STATUS, 1, "extra"]),
    ("ECHO", [M.ECHO]),
]


@pytest.mark.parametrize(("name", "message"), MALFORMED, ids=[repr(m) for _, m in MALFORMED])
def test_a_malformed_message_is_dropped_and_a_request_gets_its_failure_value(
    name: str, message: list[Any]
) -> None:
    a, b = sessions()
    events = feed(b, a.send_raw(message) + a.send(TaskSend(1, "next")))
    assert len(events) == 2 and events[1] == TaskSend(1, "next")  # it goes on
    assert type(events[0]) is Malformed and events[0].kind == name
    reason = events[0].reason
    assert reason and len(reason) < 200 and "\n" not in reason
    request = REQUEST_TYPES.get(message[0]) if type(message[0]) is int else None
    if request is not None and len(message) > 1 and type(message[1]) is int:
        assert wire(b.data_to_send()) == [[Kind.REPLY, message[1], request.FAILURE]]
    else:
        assert b.data_to_send() == b""


def test_every_kind_has_a_malformed_case() -> None:
    names = {name for name, _ in MALFORMED}
    assert {k for k, v in vars(Kind).items() if k.isupper()} <= names


# -- the envelopes written and read by hand -------------------------------------------

IDS = st.one_of(
    st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]),
    st.sampled_from([2**63, 2**64 - 1, 2**64, -1, -(2**70)]),
    st.integers(0, 2**64 + 10),
)


NAMES = st.text(max_size=40) | st.sampled_from(["", "news", "n" * 23, "n" * 24, "ü" * 200])


@FUZZ
@given(IDS, IDS, values, NAMES)
def test_envelopes_written_by_hand_are_the_codecs_bytes(
    request_id: int, task_id: int, payload: object, name: str
) -> None:
    a, _ = sessions()
    assert a.send(TaskSend(task_id, payload)) == frame(
        CODEC.encode([Kind.TASK_SEND, task_id, payload])
    )
    assert a.send_reply(request_id, payload) == frame(
        CODEC.encode([Kind.REPLY, request_id, payload])
    )
    assert a.send(Reply(request_id, payload)) == a.send_reply(request_id, payload)
    assert a.send(TaskResult(task_id, payload)) == frame(
        CODEC.encode([Kind.TASK_RESULT, task_id, payload])
    )
    assert a.send(ChannelSend(name, payload)) == frame(
        CODEC.encode([Kind.CHANNEL_SEND, name, payload])
    )
    number, data = a.send_request(TaskDeliver(task_id, payload), "w")
    assert data == frame(CODEC.encode([Kind.TASK_DELIVER, number, task_id, payload]))


def written_by_the_codec(data: bytes) -> bytes:
    """The same frame with a longer array head, which only the codec reads."""
    payload = data[4:]
    assert payload[0] in (0x83, 0x84)
    return frame(bytes([0x98, payload[0] - 0x80]) + payload[1:])


@FUZZ
@given(IDS, IDS, values, NAMES, st.binary(max_size=30))
def test_envelopes_read_by_hand_give_what_the_codec_reads(
    request_id: int, task_id: int, payload: object, name: str, raw_name: bytes
) -> None:
    a, _ = sessions()
    text = struct.pack(">BI", 0x7A, len(raw_name)) + raw_name  # maybe not UTF-8
    sent = [
        a.send(TaskSend(task_id, payload)),
        a.send_reply(request_id, payload),
        a.send_request(TaskDeliver(task_id, payload), "w")[1],
        a.send_raw([Kind.TASK_DELIVER, request_id, task_id, payload]),
        a.send(TaskResult(task_id, payload)),
        a.send(ChannelSend(name, payload)),
        frame(b"\x83\x08" + text + CODEC.encode(payload)),
    ]
    for data in sent:
        by_hand = events_text(b_with_waiters(request_id), data)
        by_codec = events_text(b_with_waiters(request_id), written_by_the_codec(data))
        assert by_hand == by_codec


def b_with_waiters(request_id: int) -> PeerSession[str]:
    """A session waiting for the reply ``request_id`` (if it could be one of its own)."""
    session = PeerSession[str](CODEC, max_frame_size=LIMIT)
    if 0 < request_id < 300:
        for _ in range(request_id):
            session.send_request(Echo(), "reply")
    return session


def events_text(session: PeerSession[Any], data: bytes) -> list[str]:
    """The events ``data`` makes, as comparable text (payloads as the codec encodes
    them: NaN is not equal to itself)."""
    out: list[str] = []
    for event in feed(session, data):
        if isinstance(event, Message):
            out.append(f"{type(event).__name__} {CODEC.encode(list(event))!r}")  # type: ignore[call-overload]
        elif isinstance(event, Answer):
            out.append(f"Answer {event.waiter} {CODEC.encode(event.value)!r}")
        else:
            out.append(repr(event))
    out.append(session.data_to_send().hex())
    return out


# -- hostile and mutated input --------------------------------------------------------

ALLOWED = (Message, SessionEvent)


def absorb(data: bytes, *, whole_frames: bool = True) -> None:
    """Feed ``data`` to a session waiting for a few replies: every event is one of
    the documented ones, or the session fails with ``ProtocolError`` (final); after
    whole frames that did not break it, it goes on."""
    session = PeerSession[str](CODEC, max_frame_size=LIMIT)
    for _ in range(3):
        session.send_request(Echo(), "w")
    with bounded(len(data)):
        try:
            session.receive_data(data)
            for event in session.events():
                assert isinstance(event, ALLOWED), event
                if type(event) is Malformed:
                    assert "\n" not in event.reason and len(event.reason) < 300
            session.data_to_send()
        except ProtocolError:
            assert session.state is SessionState.ERROR
            return
    assert session.state in (SessionState.OPEN, SessionState.PEER_LEFT)
    if whole_frames and session.state is SessionState.OPEN:
        assert feed(session, frame(CODEC.encode([Kind.TASK_SEND, 1, "ok"]))) == [TaskSend(1, "ok")]


@FUZZ
@given(st.lists(hostile_cbor(), min_size=1, max_size=4))
def test_hostile_frames_give_documented_events_or_errors(payloads: list[bytes]) -> None:
    absorb(b"".join(frame(p) for p in payloads))


def valid_frames() -> st.SearchStrategy[bytes]:
    a = PeerSession[str](CODEC, max_frame_size=LIMIT)
    samples = [a.send(m) for m in ONE_WAY] + [a.send_request(m, "w")[1] for m in REQUESTS]
    samples += [a.send_reply(1, "v"), a.send_reply(2, None), a.ping(), a.send(Pong())]
    return st.sampled_from([s[4:] for s in samples])


@FUZZ
@given(st.lists(mutated(valid_frames()), min_size=1, max_size=4))
def test_mutated_messages_give_documented_events_or_errors(payloads: list[bytes]) -> None:
    absorb(b"".join(frame(p) for p in payloads))


@FUZZ
@given(st.binary(min_size=1, max_size=200))
def test_any_byte_stream_gives_documented_events_or_errors(data: bytes) -> None:
    absorb(data, whole_frames=False)


# -- the shape of every kind, structure-aware -----------------------------------------
#
# Frames built field by field: each field valid for its slot, any other value, or a
# raw CBOR item of any kind (``cbor_strategies.cbor_items``: tags, bignums, shared
# references, invalid UTF-8, stray bytes...), with a field more or less now and
# then.  The reference is the codec reading the whole frame, and an oracle written
# from the table in ``messages.py`` (not from its parsers) says what the session
# must make of what it reads: the typed message, or ``Malformed`` and, for a request
# with an int id, the failure reply; a frame the codec refuses is ``Undecodable``.
# The hot kinds' envelopes are read by hand (cbor2 writes the same bytes), so the
# hand-written reader meets the same cases and must agree.

WHERE = Location("127.0.0.1", 9706)
A_TASK = Ref("task", b"\x02" * 16, 9, "t", WHERE)
A_CHANNEL = Ref("channel", b"\x02" * 16, "c", "c", WHERE)

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 256, 257, 2**63 - 1, 2**63, 2**64]),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["task", "channel", "rps", "node"]),
    st.binary(max_size=70),
    st.sampled_from([A_TASK, A_CHANNEL, (), (1,), [], {}]),
    st.lists(st.integers(-1, 300) | st.binary(max_size=3) | st.just(A_TASK), max_size=3),
    st.dictionaries(st.text(max_size=3) | st.integers(0, 3), st.integers(), max_size=2),
)


def _timeout_ok(v: Any) -> bool:
    return v is None or (type(v) in (int, float) and v >= 0)  # (NaN >= 0 is False)


def _task_ref(v: Any) -> bool:
    return type(v) is Ref and v.kind == "task"


def _subscriber(v: Any) -> bool:
    return type(v) is Ref and v.kind in ("task", "channel")


def _mark_ok(v: Any) -> bool:
    return (
        type(v) is list
        and len(v) == 2
        and type(v[0]) is bytes
        and 1 <= len(v[0]) <= MAX_SEND_ID
        and type(v[1]) is int
        and 1 <= v[1] <= MAX_HOPS
    )


@dataclass(frozen=True)
class Slot:
    valid: st.SearchStrategy[Any]  # values that fit
    fits: Callable[[Any], bool]  # the oracle's test


RID = Slot(st.integers(-(2**70), 2**70), lambda v: type(v) is int)
TASK_ID = Slot(
    st.integers(1, 2**63 - 1) | st.sampled_from([1, 23, 24, 255, 256, 65536, 2**32]),
    lambda v: type(v) is int and 0 < v < 2**63,
)
PAYLOAD = Slot(ANY, lambda v: True)
NAME = Slot(st.text(max_size=10), lambda v: type(v) is str)
TIMEOUT = Slot(st.none() | st.floats(0, 1e9) | st.integers(0, 10**6), _timeout_ok)
MARK = Slot(
    st.tuples(st.binary(min_size=1, max_size=MAX_SEND_ID), st.integers(1, MAX_HOPS)).map(list),
    _mark_ok,
)
SUBSCRIBER = Slot(st.sampled_from([A_TASK, A_CHANNEL]), _subscriber)
COUNT = Slot(st.integers(0, 10**6), lambda v: type(v) is int and v >= 0)
A_TASK_SLOT = Slot(st.just(A_TASK), _task_ref)
TASKS = Slot(
    st.lists(st.just(A_TASK), max_size=2),
    lambda v: type(v) is list and all(_task_ref(m) for m in v),
)
EXIT = Slot(
    st.none() | st.just(MonitorStatus(A_TASK, ValueError, "x")),
    lambda v: v is None or (type(v) is MonitorStatus and _task_ref(v.info)),
)

#: kind -> its slots after the kind, and its optional last slot.
SHAPES: dict[int, tuple[list[Slot], Slot | None]] = {
    Kind.TASK_SEND: ([TASK_ID, PAYLOAD], None),
    Kind.TASK_TERMINATE: ([TASK_ID], None),
    Kind.TASK_RESULT: ([TASK_ID, PAYLOAD], None),
    Kind.CHANNEL_SEND: ([NAME, PAYLOAD], MARK),
    Kind.PING: ([], None),
    Kind.PONG: ([], None),
    Kind.TASK_DELIVER: ([RID, TASK_ID, PAYLOAD], None),
    Kind.TASK_MONITOR: ([RID, TASK_ID, A_TASK_SLOT], None),
    Kind.TASK_LINK: ([RID, TASK_ID, A_TASK_SLOT], None),
    Kind.TASK_UNLINK: ([TASK_ID, A_TASK_SLOT, EXIT], None),
    Kind.TASK_FINISH: ([RID, TASK_ID, TIMEOUT], None),
    Kind.TASK_ALIVE: ([RID, TASK_ID], None),
    Kind.LOCATE: (
        [RID, Slot(st.sampled_from(LOCATABLE), lambda v: v in LOCATABLE), NAME, TIMEOUT],
        None,
    ),
    Kind.CHANNEL_DELIVER: (
        [
            RID,
            NAME,
            PAYLOAD,
            TIMEOUT,
            Slot(st.integers(0, 10**6), lambda v: type(v) is int and v >= 0),
        ],
        MARK,
    ),
    Kind.CHANNEL_SUBSCRIBE: ([RID, NAME, SUBSCRIBER, TIMEOUT], None),
    Kind.CHANNEL_UNSUB: ([RID, NAME, SUBSCRIBER, TIMEOUT], None),
    Kind.RPS_CALL: (
        [
            RID,
            NAME,
            Slot(st.lists(st.integers(), max_size=3), lambda v: type(v) is list),
            Slot(
                st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                lambda v: type(v) is dict and all(type(k) is str for k in v),
            ),
            TASKS,
        ],
        TASKS,  # the links
    ),
    Kind.NODE_STATUS: ([RID], None),
    Kind.ECHO: ([RID], None),
}


@st.composite
def shaped_frames(draw: st.DrawFn) -> bytes:
    """The payload of a frame of a known kind, built field by field."""
    kind = draw(st.sampled_from(sorted(SHAPES)))
    slots, optional = SHAPES[kind]
    if optional is not None and draw(st.booleans()):
        slots = [*slots, optional]
    fields = []
    for slot in slots:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            fields.append(draw(cbor_items(max_leaves=6)))
        else:
            fields.append(CODEC.encode(draw(slot.valid if choice > 2 else ANY)))
    change = draw(st.integers(0, 9))
    if change == 0 and fields:
        fields.pop()
    elif change == 1:
        fields.append(CODEC.encode(draw(ANY)))
    return cbor_head(4, 1 + len(fields)) + CODEC.encode(kind) + b"".join(fields)


def fits(message: list[Any]) -> bool:
    """The oracle: whether a decoded ``message`` has the shape of its kind."""
    slots, optional = SHAPES[message[0]]
    fields = message[1:]
    if optional is not None and len(fields) == len(slots) + 1:
        slots = [*slots, optional]
    return len(fields) == len(slots) and all(s.fits(v) for s, v in zip(slots, fields, strict=True))


def typed_fields(message: list[Any]) -> list[Any]:
    """What the typed message of a well-shaped ``message`` holds, in its order:
    timeouts as floats, the forwarded mark as ``sent`` and ``hops``, a request's id
    last."""
    kind, *fields = message
    slots, optional = SHAPES[kind]
    fields = [
        float(v) if slot is TIMEOUT and v is not None else v
        for slot, v in zip(slots, fields[: len(slots)], strict=True)
    ] + fields[len(slots) :]
    if optional is MARK:
        fields = fields[: len(slots)] + (
            fields[len(slots)] if len(fields) > len(slots) else [None, 0]
        )
    elif optional is TASKS:  # an RPS call's links: none when absent
        fields = [*fields[: len(slots)], fields[len(slots)] if len(fields) > len(slots) else ()]
    return [*fields[1:], fields[0]] if kind in REQUEST_TYPES else fields


@FUZZ
@given(shaped_frames())
def test_every_kinds_shape_is_checked_as_its_table_says(payload: bytes) -> None:
    _, b = sessions()
    with bounded(len(payload)):
        events = feed(b, frame(payload))
    try:
        message = CODEC.decode(payload)
    except DecodeError:
        assert [type(e) for e in events] == [Undecodable]
        assert b.data_to_send() == b""
        return
    assert type(message) is list
    kind = message[0]
    if fits(message) and kind in (Kind.PING, Kind.PONG):
        assert events == []  # the session's own: a PING is answered, a PONG consumed
        assert wire(b.data_to_send()) == ([[Kind.PONG]] if kind == Kind.PING else [])
        return
    if fits(message):
        (event,) = events
        assert type(event) is TYPES[kind]
        assert CODEC.encode(list(event)) == CODEC.encode(typed_fields(message))  # type: ignore[call-overload]
        assert b.data_to_send() == b""
        return
    (event,) = events
    assert type(event) is Malformed and event.kind == kind_name(kind), event
    assert "\n" not in event.reason and len(event.reason) < 300
    request = REQUEST_TYPES.get(kind)
    if request is not None and len(message) > 1 and type(message[1]) is int:
        assert wire(b.data_to_send()) == [[Kind.REPLY, message[1], request.FAILURE]]
    else:
        assert b.data_to_send() == b""


def test_the_shapes_cover_every_kind_the_node_handles() -> None:
    assert set(SHAPES) | {Kind.REPLY, Kind.BYE} == set(TYPES)
