"""The one-way hot path (issue 21, item 3).  Receiving, runs of task messages:
``FrameDecoder.take_run``, ``PeerSession.events(runs=True)`` and the dispatcher's
``TaskMessages`` path; sending, ``PeerSession.send_task``.

A run is only a cheaper way to read and deliver the same messages: flattened, the
events of ``events(runs=True)`` are those of ``events()`` (same events, same order,
same errors at the same point, however the bytes are chunked), and a run put in a
mailbox leaves it as the same messages one at a time would (the bound, the count of
refused messages, a parked receiver woken with the first).  ``send_task`` is
``send(TaskSend(...))``, byte for byte and refusal for refusal.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import trio
from cbor_strategies import frame, hostile_cbor
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_decoders import FUZZ

from triopycos import MonitorStatus, Task
from triopycos.protocol.codec import Codec
from triopycos.protocol.errors import DecodeError, FrameTooLarge, ProtocolError
from triopycos.protocol.framing import FrameDecoder
from triopycos.protocol.messages import Bye, Echo, Kind, TaskSend, TaskTerminate
from triopycos.protocol.session import MessageTooLarge, PeerSession, SessionClosed, TaskMessages
from triopycos.services.limits import Limits
from triopycos.testing import VirtualNetwork

CODEC = Codec()
LIMIT = 1 << 16


def framed(prefix: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(prefix) + len(payload)) + prefix + payload


# -- FrameDecoder.take_run ---------------------------------------------------------


def test_take_run_takes_matching_frames_and_stops_at_the_first_other() -> None:
    decoder = FrameDecoder(LIMIT)
    p = b"\x83\x01\x05"
    decoder.receive_data(
        framed(p, b"\x01")
        + framed(p, b"\x02")
        + framed(b"\x83\x01\x06", b"\x03")  # another task
        + framed(p, b"\x04")
    )
    spans = decoder.spans()
    buf, start, end = next(spans)  # type: ignore[misc]
    assert buf[start:end] == p + b"\x01"
    assert decoder.take_run(p, 100) == [b"\x02"]
    buf, start, end = next(spans)  # type: ignore[misc]
    assert buf[start:end] == b"\x83\x01\x06\x03"  # the one it stopped at comes next
    assert decoder.take_run(b"\x83\x01\x06", 100) == []  # the next one is task 5's
    assert decoder.take_run(p, 100) == [b"\x04"]
    assert next(spans) is None  # (the spans generator goes on after what was taken)


def test_take_run_respects_its_limit_and_leaves_partial_frames() -> None:
    decoder = FrameDecoder(LIMIT)
    p = b"\x83\x01\x05"
    data = b"".join(framed(p, bytes([i])) for i in range(10))
    decoder.receive_data(data[:-2])  # the last frame is not complete
    assert decoder.take_run(p, 100) == []  # only bytes joined by spans or next_frame
    assert decoder.next_frame() == p + b"\x00"
    assert decoder.take_run(p, 4) == [bytes([i]) for i in range(1, 5)]
    assert decoder.take_run(p, 100) == [bytes([i]) for i in range(5, 9)]
    assert decoder.take_run(p, 100) == []
    assert decoder.buffered == 6
    decoder.receive_data(data[-2:])
    assert decoder.next_frame() == p + b"\x09"
    decoder.eof()


def test_take_run_leaves_a_bare_envelope_and_an_oversized_header_to_spans() -> None:
    p = b"\x83\x01\x05"
    decoder = FrameDecoder(LIMIT)
    decoder.receive_data(
        framed(p, b"\x00") + framed(p, b"\x01") + framed(p, b"") + framed(p, b"\x02")
    )
    assert decoder.next_frame() == p + b"\x00"
    assert decoder.take_run(p, 100) == [b"\x01"]
    assert decoder.next_frame() == p  # judged by the caller's general path
    assert decoder.take_run(p, 100) == [b"\x02"]

    decoder = FrameDecoder(16)
    decoder.receive_data(framed(p, b"\x00") + framed(p, b"\x01") + struct.pack(">I", 17))
    assert decoder.next_frame() == p + b"\x00"
    assert decoder.take_run(p, 100) == [b"\x01"]  # no error yet: that is spans' to raise
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()
    with pytest.raises(ProtocolError):
        decoder.take_run(p, 100)  # failed: for good


# -- Codec.decode_into -------------------------------------------------------------


@FUZZ
@given(st.lists(hostile_cbor(), max_size=6), st.integers(0, 6))
def test_decode_into_is_decode_one_by_one(chunks: list[bytes], start: int) -> None:
    expected: list[str] = []
    for chunk in chunks[start:]:
        try:
            expected.append(repr(CODEC.decode(chunk)))
        except DecodeError as exc:
            expected.append(f"error {exc}")
            break
    values: list[object] = []
    failed = CODEC.decode_into(chunks, start, values)
    got = [repr(value) for value in values]
    if failed is not None:
        index, error = failed
        assert index == start + len(values)
        got.append(f"error {error}")
    assert got == expected


# -- events(runs=True) == events(), flattened ------------------------------------------


def flattened(events: Iterable[object]) -> Iterator[object]:
    for event in events:
        if type(event) is TaskMessages:
            assert len(event.messages) > 1  # a run of one is a TaskSend
            for message in event.messages:
                yield TaskSend(event.task_id, message)
        else:
            yield event


def transcript(data: bytes, chunk: int, *, runs: bool, limit: int = LIMIT) -> list[str]:
    """The events of ``data`` fed in ``chunk``-byte pieces, as comparable text (NaN
    is not equal to itself), then the error that ended the session, if one did."""
    session = PeerSession[str](CODEC, max_frame_size=limit)
    for _ in range(3):
        session.send_request(Echo(), "w")  # replies 1..3 are awaited
    out: list[str] = []
    try:
        for at in range(0, len(data), chunk):
            session.receive_data(data[at : at + chunk])
            events = session.events(runs=runs)
            out.extend(map(repr, flattened(events) if runs else events))
        session.receive_data(b"")
        out.extend(repr(e) for e in session.events(runs=runs))
    except ProtocolError as exc:
        out.append(f"error {exc}")
    out.append(session.data_to_send().hex())
    return out


def _task_frames() -> st.SearchStrategy[bytes]:
    """Frames of a stream of task messages: mostly to a few tasks (runs), with
    hostile payloads, other kinds, bare envelopes and odd task-id heads among them."""
    sender = PeerSession[str](CODEC, max_frame_size=LIMIT)
    task_id = st.sampled_from([5, 5, 5, 5, 1, 23, 24, 300, 70000, 2**40])
    good = st.builds(
        lambda t, v: sender.send(TaskSend(t, v)),
        task_id,
        st.integers() | st.text(max_size=5) | st.tuples(st.integers(), st.none()),
    )
    hostile = st.builds(
        lambda t, p: frame(sender.send(TaskSend(t, 0))[4:-1] + p), task_id, hostile_cbor()
    )
    others = st.sampled_from(
        [
            sender.send(TaskTerminate(5)),
            frame(b"\x83\x01\x05"),  # a bare envelope (no payload)
            frame(b"\x83\x01\x00\x01"),  # task id 0
            frame(b"\x83\x01\x18\x05\x01"),  # a non-minimal head
            sender.send_reply(2, "r"),
            frame(CODEC.encode([Kind.TASK_SEND, 5, 1, 2])),  # four items
        ]
    )
    return st.one_of(good, good, good, hostile, others)


@FUZZ
@given(
    st.lists(_task_frames(), min_size=1, max_size=30),
    st.sampled_from([1, 3, 7, 64, 1 << 20]),
    st.sampled_from(["", "bye", "big", "cut"]),
)
def test_runs_flattened_are_the_events_one_by_one(
    frames: list[bytes], chunk: int, end: str
) -> None:
    data = b"".join(frames)
    if end == "bye":
        data += PeerSession[str](CODEC, max_frame_size=LIMIT).send(Bye()) + frames[0]
    elif end == "big":
        data += struct.pack(">I", LIMIT + 1) + frames[0]
    elif end == "cut":
        data += frames[0][:-1]
    assert transcript(data, chunk, runs=True) == transcript(data, chunk, runs=False)


def test_a_run_is_one_event_and_an_undecodable_frame_splits_it() -> None:
    sender = PeerSession[str](CODEC, max_frame_size=LIMIT)
    receiver = PeerSession[str](CODEC, max_frame_size=LIMIT)
    data = b"".join(sender.send(TaskSend(7, i)) for i in range(5))
    data += frame(b"\x83\x01\x07\xff")  # not CBOR
    data += b"".join(sender.send(TaskSend(7, i)) for i in range(5, 7))
    data += sender.send(TaskSend(8, "x"))
    receiver.receive_data(data)
    events = list(receiver.events(runs=True))
    assert events[0] == TaskMessages(7, [0, 1, 2, 3, 4])
    assert type(events[1]).__name__ == "Undecodable"
    assert events[2:] == [TaskMessages(7, [5, 6]), TaskSend(8, "x")]


# -- the node: a run into a mailbox ----------------------------------------------------


async def test_a_run_into_a_mailbox_is_bounded_as_one_by_one(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[Any] = []
    runs: list[int] = []
    send_run = Task._send_run

    def spy(task: Task, messages: list[Any]) -> bool:
        runs.append(len(messages))
        return send_run(task, messages)

    monkeypatch.setattr(Task, "_send_run", spy)

    async def sink(task: Task) -> None:
        task.register("sink")
        got.append(await task.receive())  # parked: woken with the first of a run
        await task.sleep(10)  # meanwhile the rest fill the mailbox
        while True:
            message = await task.receive(timeout=1)
            if message is None:
                return
            got.append(message)

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a", limits=Limits(max_mailbox=5)) as a,
        net.open_pycos(name="b") as b,
    ):
        sink_task = a.spawn(sink)
        await trio.sleep(0.1)
        assert await b.peer(a.location) == 0

        async def client(task: Task) -> None:
            remote = await Task.locate("sink", a.location, timeout=5)
            assert remote is not None
            for i in range(20):  # one write: one read, one run
                assert remote.send(i) == 0

        await b.spawn(client).finish()
        await sink_task.finish()
        assert got == list(range(6))  # the first woke it, 5 more fit
        assert runs and max(runs) > 5  # (runs did come)
        assert a.statistics().messages_refused == 14


async def test_a_run_with_a_monitor_status_goes_one_by_one(autojump_clock: Any) -> None:
    got: list[Any] = []

    async def sink(task: Task) -> None:
        task.register("sink")
        await task.sleep(1)
        for _ in range(3):
            got.append(await task.receive())

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        sink_task = a.spawn(sink)
        assert await b.peer(a.location) == 0

        async def client(task: Task) -> None:
            remote = await Task.locate("sink", a.location, timeout=5)
            assert remote is not None
            assert remote.send(1) == 0
            assert remote.send(MonitorStatus(task, StopIteration, 2)) == 0
            assert remote.send(3) == 0

        await b.spawn(client).finish()
        await sink_task.finish()
        assert got[0] == 1 and got[2] == 3
        assert type(got[1]) is MonitorStatus and got[1].value == 2


# -- the sending side's hot path ---------------------------------------------------------


@pytest.mark.parametrize("task_id", [1, 23, 24, 255, 256, 65535, 65536, 2**32, 2**63 - 1])
@pytest.mark.parametrize("message", [0, "hi", ("t", 1), None, 2**70, [1.5, {"k": b"v"}]])
def test_send_task_is_send_of_a_task_send(task_id: int, message: object) -> None:
    one = PeerSession[str](CODEC, max_frame_size=LIMIT)
    other = PeerSession[str](CODEC, max_frame_size=LIMIT)
    assert one.send_task(task_id, message) == other.send(TaskSend(task_id, message))


def test_send_task_refuses_as_send() -> None:
    session = PeerSession[str](CODEC, max_frame_size=8)
    with pytest.raises(MessageTooLarge):
        session.send_task(1, "too long for the frame")
    with pytest.raises(TypeError):
        session.send_task(1, object())
    session.send(Bye())
    with pytest.raises(SessionClosed):
        session.send_task(1, 0)
