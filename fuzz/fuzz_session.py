"""Coverage-guided fuzzing of the peer session, ``protocol.session.PeerSession``
(atheris): what an authenticated peer's bytes make of the session that reads them.

An input's first byte sets the read size (1 + 17 x byte), its second how many of
our requests wait for a reply (0 to 7, so that replies find someone); the rest is
the byte stream the peer sent.  Properties:

* reading gives only the documented events (a ``Message`` for the node, or the
  session's own: ``Answer``, ``Malformed``, ``Undecodable``, ``Bye``) or raises
  ``ProtocolError``, after which the session is in ERROR; nothing else comes out;
* a ``Malformed`` event's reason is one bounded line (it is logged);
* what the session writes itself (PONGs, failure replies) is whole frames that
  another session reads without a protocol error;
* every message for the node travels again: sent by another session, it arrives
  as the same message (what the node forwards stays readable);
* reading runs of task messages as one event (the driver's way) gives the same
  events, one ``TaskSend`` per message, and breaks the session alike;
* the envelopes read by hand (task messages, deliveries, replies, results, channel
  messages) give the same events as the same frame with a longer array head,
  which only the codec reads.

Slow inputs (``-timeout``) and memory growth (``-rss_limit_mb``) are findings too.
Run (docs/testing.md, "Fuzzing")::

    .venv/bin/python fuzz/fuzz_session.py -dict=fuzz/cbor.dict -timeout=2 \\
        -rss_limit_mb=1024 -max_total_time=600 fuzz/corpus/session
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    import _seeds

    from triopycos.protocol.codec import MAX_DEPTH_LIMIT, Codec, Ref
    from triopycos.protocol.errors import DecodeError, ProtocolError
    from triopycos.protocol.messages import (
        Bye,
        ChannelDeliver,
        ChannelSend,
        ChannelSubscribe,
        Echo,
        Locate,
        Message,
        OneWay,
        Reply,
        Request,
        RpsCall,
        StatusRequest,
        TaskDeliver,
        TaskFinish,
        TaskLink,
        TaskMonitor,
        TaskResult,
        TaskSend,
        TaskTerminate,
        TaskUnlink,
    )
    from triopycos.protocol.session import (
        Answer,
        Malformed,
        PeerSession,
        SessionEvent,
        SessionState,
        TaskMessages,
        Undecodable,
    )
    from triopycos.values import Location, MonitorStatus

CODEC = Codec()
DEEP = Codec(max_depth=MAX_DEPTH_LIMIT)
LIMIT = 1 << 16  # the session under test (frames over it break the framing)
ROOMY = 1 << 22  # sessions that send again (re-encoding may grow a value)


def session(waiting: int, limit: int = LIMIT) -> PeerSession[int]:
    s = PeerSession[int](CODEC, max_frame_size=limit)
    for number in range(waiting):
        s.send_request(Echo(), number)
    return s


def read(
    s: PeerSession[int], stream: bytes, size: int, *, runs: bool = False
) -> tuple[list[object], bool]:
    """The events of ``stream`` fed in reads of ``size``, and whether it broke the
    session (checked: only ``ProtocolError``, and then ERROR).  ``runs``: read as the
    driver does, runs of task messages as one ``TaskMessages`` event each, given
    here one ``TaskSend`` per message."""
    events: list[object] = []
    try:
        for start in range(0, len(stream), size):
            s.receive_data(stream[start : start + size])
            for event in s.events(runs=runs):
                if isinstance(event, TaskMessages):
                    events.extend(TaskSend(event.task_id, m) for m in event.messages)
                else:
                    events.append(event)
    except ProtocolError:
        assert s.state is SessionState.ERROR, s.state
        return events, True
    return events, False


def frames(stream: bytes) -> list[bytes]:
    """The whole frames at the start of ``stream`` (their payloads)."""
    found: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 4:
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > LIMIT or len(stream) - pos - 4 < size:
            break
        found.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return found


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def text(events: list[object]) -> list[str]:
    """Events as comparable text (values as the codec writes them: NaN is not equal
    to itself; an undecodable frame by its kind only, since the codec's words for
    the same fault may differ between a payload and a whole message)."""
    out = []
    for event in events:
        if isinstance(event, Undecodable):
            out.append("Undecodable")
        elif isinstance(event, Message):
            out.append(f"{type(event).__name__} {CODEC.encode(list(event))!r}")  # type: ignore[call-overload]
        elif isinstance(event, Answer):
            out.append(f"Answer {event.waiter} {CODEC.encode(event.value)!r}")
        else:
            out.append(repr(event))
    return out


def fields(message: Message) -> bytes:
    """A message's fields as the codec writes them (a request's own id left out)."""
    values: list[Any] = list(message)  # type: ignore[call-overload]
    return CODEC.encode(values[:-1] if isinstance(message, Request) else values)


def travels_again(message: Message) -> None:
    sender, receiver = PeerSession[int](CODEC, max_frame_size=ROOMY), session(0, ROOMY)
    try:
        if isinstance(message, Request):
            data = sender.send_request(message, 0)[1]
        else:
            assert isinstance(message, OneWay)
            data = sender.send(message)
    except ValueError as exc:  # only "deeper than max_depth" may refuse
        assert "max_depth" in str(exc), exc
        return
    receiver.receive_data(data)
    (again,) = receiver.events()
    assert type(again) is type(message), (again, message)
    # The same bytes, or (a set's items may come out in another order once decoded
    # again: sets have no order) equal values.
    assert fields(again) == fields(message) or list(again) == list(message), (again, message)  # type: ignore[call-overload]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    size, waiting, stream = 1 + 17 * data[0], data[1] % 8, data[2:]
    s = session(waiting)
    events, broken = read(s, stream, size)
    # Reading runs (the driver's way) gives the same events and breaks alike.
    run_events, run_broken = read(session(waiting), stream, size, runs=True)
    assert (run_broken, text(run_events)) == (broken, text(events)), (run_events, events)
    for event in events:
        assert isinstance(event, Message | SessionEvent), event
        if isinstance(event, Malformed):
            assert "\n" not in event.reason and len(event.reason) < 300, event.reason
        elif isinstance(event, Message) and not isinstance(event, Reply | Bye):
            travels_again(event)
    output = s.data_to_send()
    if output:
        assert not broken
        other = session(0)
        other.receive_data(output)
        assert all(isinstance(e, Message) for e in other.events())
    # The same frames, each with a longer array head where the session would read
    # the envelope by hand: the codec's reading must agree.
    for payload in frames(stream)[:4]:
        if payload[:1] in (b"\x83", b"\x84") and len(payload) > 1:
            longer = bytes([0x98, payload[0] - 0x80]) + payload[1:]
            by_hand, hand_broken = read(session(waiting), frame(payload), len(payload) + 4)
            by_codec, codec_broken = read(session(waiting), frame(longer), len(longer) + 4)
            if (hand_broken, text(by_hand)) != (codec_broken, text(by_codec)):
                # Documented: the depth limit counts a hand-read message's own
                # nesting, not the list it travels in (one level more for the codec).
                assert at_the_depth_limit(longer), (payload, by_hand, by_codec)


def at_the_depth_limit(payload: bytes) -> bool:
    try:
        CODEC.decode(payload)
    except DecodeError:
        try:
            DEEP.decode(payload)
        except DecodeError:
            return False
        return True
    return False


def seeds() -> list[bytes]:
    """Prefixes (read size, waiting requests) and valid frames of every kind."""
    task = Ref("task", b"\x01" * 16, 7, "worker", Location("127.0.0.1", 9706))
    s = PeerSession[int](CODEC, max_frame_size=LIMIT)
    messages: list[OneWay] = [
        TaskSend(1, "hi"),
        TaskSend(300, {"k": [1, 2.5, None]}),
        TaskTerminate(5),
        ChannelSend("news", ("item", 1)),
        ChannelSend("news", 1, b"\x02" * 24, 3),
        TaskResult(7, None),
        TaskUnlink(3, task, None),
        TaskUnlink(3, task, MonitorStatus(task, ValueError, "boom")),
    ]
    requests: list[Request] = [
        TaskDeliver(3, b"x" * 40),
        TaskMonitor(3, task),
        TaskFinish(3, 2.5),
        Locate("task", "server", None),
        ChannelDeliver("news", "m", 2.0, 1, b"\x03" * 24, 2),
        ChannelSubscribe("news", task, None),
        RpsCall("inc", [1], {"step": 2}, [task]),
        RpsCall("inc", [], {}, [], [task]),
        TaskLink(3, task),
        StatusRequest(),
    ]
    stream = [s.send(m) for m in messages] + [s.send_request(r, 0)[1] for r in requests]
    stream += [s.send_reply(1, "v"), s.send_reply(300, None), s.ping()]
    found = [b"\x00\x03" + f for f in stream]
    found.append(b"\x00\x03" + b"".join(stream))
    found.append(b"\x01\x03" + b"".join(stream))  # reads of 18 bytes
    found.extend(b"\x00\x00" + frame(m) for m in _seeds.messages())
    return found


def main() -> None:
    corpus = _seeds.corpus_dir(sys.argv)
    if corpus is not None:
        _seeds.write(corpus, seeds())
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
