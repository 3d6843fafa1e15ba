"""Length-prefixed framing: encode_frame(s) and the sans-IO FrameDecoder."""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triopycos.protocol import (
    FrameDecoder,
    FrameTooLarge,
    ProtocolError,
    encode_frame,
    encode_frames,
)


def drain(decoder: FrameDecoder) -> list[bytes]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def feed(decoder: FrameDecoder, pieces: list[bytes]) -> list[bytes]:
    frames = []
    for piece in pieces:
        decoder.receive_data(piece)
        frames += drain(decoder)
    return frames


def feed_spans(decoder: FrameDecoder, pieces: list[bytes]) -> list[bytes]:
    """``feed``, through one ``spans()`` generator kept across the pieces."""
    spans = decoder.spans()
    frames = []
    for piece in pieces:
        decoder.receive_data(piece)
        while (span := next(spans)) is not None:
            buffer, start, end = span
            frames.append(buffer[start:end])
    return frames


#: The two ways to read frames, for the tests both must pass.
FEEDS: dict[str, Callable[[FrameDecoder, list[bytes]], list[bytes]]] = {
    "next_frame": feed,
    "spans": feed_spans,
}


def split(blob: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(cuts), len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(edges)]


# -- encoding ---------------------------------------------------------------------------


def test_encode_frame_is_big_endian_length_then_payload() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(b"x" * 300)[:4] == struct.pack(">I", 300)


def test_encode_frames_concatenates_frames() -> None:
    payloads = [b"", b"a", b"bc" * 100, b"\x00"]
    assert encode_frames(payloads) == b"".join(encode_frame(p) for p in payloads)
    assert encode_frames([]) == b""
    assert encode_frames(iter(payloads)) == encode_frames(payloads)


# -- decoding ---------------------------------------------------------------------------


def test_many_frames_in_one_chunk() -> None:
    payloads = [str(i).encode() * (i % 7) for i in range(500)]
    decoder = FrameDecoder(max_frame_size=1024)
    decoder.receive_data(encode_frames(payloads))
    frames = drain(decoder)
    assert frames == payloads
    assert all(type(frame) is bytes for frame in frames)
    assert decoder.buffered == 0
    decoder.eof()


def test_byte_by_byte() -> None:
    payloads = [b"hello", b"", b"world" * 10]
    blob = encode_frames(payloads)
    decoder = FrameDecoder(max_frame_size=100)
    assert feed(decoder, [blob[i : i + 1] for i in range(len(blob))]) == payloads


def test_next_frame_needs_more_data() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.next_frame() is None
    decoder.receive_data(b"\x00\x00")
    assert decoder.next_frame() is None
    decoder.receive_data(b"\x00\x05he")
    assert decoder.next_frame() is None
    assert decoder.buffered == 6
    decoder.receive_data(bytearray(b"llo\x00"))  # bytes-likes are accepted
    assert decoder.next_frame() == b"hello"
    assert decoder.next_frame() is None
    assert decoder.buffered == 1


def test_empty_data_is_ignored() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    decoder.receive_data(b"")
    assert decoder.next_frame() is None
    decoder.eof()
    decoder.receive_data(b"")  # still fine after eof: nothing was added


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_size=8)
    decoder.receive_data(encode_frame(b"12345678"))
    assert decoder.next_frame() == b"12345678"


def test_oversized_header_rejected_before_the_body_arrives() -> None:
    header = struct.pack(">I", 2**31)
    decoder = FrameDecoder(max_frame_size=1000)
    decoder.receive_data(header[:2])
    assert decoder.next_frame() is None
    decoder.receive_data(header[2:])  # the header is complete, no byte of the body
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_frame()
    assert (info.value.size, info.value.limit) == (2**31, 1000)
    assert isinstance(info.value, ProtocolError)
    assert decoder.buffered == 0


def test_oversized_header_after_good_frames() -> None:
    decoder = FrameDecoder(max_frame_size=4)
    decoder.receive_data(encode_frame(b"ok") + struct.pack(">I", 5) + b"12345")
    assert decoder.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


def test_error_state_is_final() -> None:
    decoder = FrameDecoder(max_frame_size=4)
    decoder.receive_data(struct.pack(">I", 5))
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()
    with pytest.raises(ProtocolError, match="failed earlier"):
        decoder.next_frame()
    with pytest.raises(ProtocolError):
        decoder.receive_data(b"\x00\x00\x00\x00")
    with pytest.raises(ProtocolError):
        decoder.eof()


@pytest.mark.parametrize(
    ("leftover", "match"),
    [
        (b"\x00", "frame header"),
        (b"\x00\x00\x00", "frame header"),
        (b"\x00\x00\x00\x05abc", r"in a frame \(3 of 5 bytes\)"),
        (b"\x00\x00\x00\x01", r"in a frame \(0 of 1 bytes\)"),
    ],
)
def test_eof_in_the_middle_of_a_frame(leftover: bytes, match: str) -> None:
    decoder = FrameDecoder(max_frame_size=100)
    decoder.receive_data(encode_frame(b"whole") + leftover)
    assert drain(decoder) == [b"whole"]
    with pytest.raises(ProtocolError, match=match):
        decoder.eof()
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def test_eof_with_whole_frames_still_buffered() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    decoder.receive_data(encode_frames([b"a", b"b"]))
    decoder.eof()
    decoder.eof()  # idempotent
    assert drain(decoder) == [b"a", b"b"]
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"more")


def test_eof_checks_limit_of_frames_not_yet_read() -> None:
    decoder = FrameDecoder(max_frame_size=3)
    decoder.receive_data(struct.pack(">I", 4) + b"1234")
    with pytest.raises(FrameTooLarge):
        decoder.eof()


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_bad_limits(bad: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=bad)


def test_limit_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        FrameDecoder(max_frame_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FrameDecoder(max_frame_size=True)


@pytest.mark.parametrize("way", ["next_frame", "spans"])
def test_big_frame_in_small_chunks_is_linear(way: str) -> None:
    # Quadratic buffering would copy the partial frame on every chunk: ~8 GB here,
    # seconds of CPU; linear, a few ms.  (CPU time: other load cannot fail it.)
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
    blob = encode_frame(payload)
    decoder = FrameDecoder(max_frame_size=len(payload))
    start = time.process_time()
    frames = FEEDS[way](decoder, [blob[i : i + 4096] for i in range(0, len(blob), 4096)])
    assert time.process_time() - start < 2.0
    assert frames == [payload]


# -- properties -------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["next_frame", "spans"])
@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    data=st.data(),
)
def test_any_split_yields_the_same_frames(
    way: str, payloads: list[bytes], data: st.DataObject
) -> None:
    blob = encode_frames(payloads)
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=40))
    decoder = FrameDecoder(max_frame_size=300)
    assert FEEDS[way](decoder, split(blob, cuts)) == payloads
    decoder.eof()


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.binary(max_size=40), max_size=12), limit=st.integers(0, 64))
def test_garbage_raises_only_protocol_errors(pieces: list[bytes], limit: int) -> None:
    decoder = FrameDecoder(max_frame_size=limit)
    try:
        for frame in feed(decoder, pieces):
            assert len(frame) <= limit
        decoder.eof()
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decoder.next_frame()


# -- spans: the reader's loop without a call (or a copy) per frame ----------------------


def test_spans_needs_more_data_then_goes_on() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    spans = decoder.spans()
    assert next(spans) is None
    blob = encode_frames([b"one", b"two"])
    decoder.receive_data(blob[:9])  # the first frame and a bit of the second
    buffer, start, end = next(spans)  # type: ignore[misc]
    assert buffer[start:end] == b"one"
    assert next(spans) is None and next(spans) is None
    decoder.receive_data(blob[9:])
    buffer, start, end = next(spans)  # type: ignore[misc]
    assert buffer[start:end] == b"two"
    assert next(spans) is None
    decoder.eof()


def test_spans_refuses_an_oversized_header_and_stays_failed() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    spans = decoder.spans()
    decoder.receive_data(encode_frame(b"ok") + struct.pack(">I", 11))
    buffer, start, end = next(spans)  # type: ignore[misc]
    assert buffer[start:end] == b"ok"
    with pytest.raises(FrameTooLarge):
        next(spans)
    with pytest.raises(ProtocolError):
        next(decoder.spans())
    with pytest.raises(ProtocolError):
        decoder.next_frame()


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=60), max_size=12),
    data=st.data(),
)
def test_spans_and_next_frame_take_turns(payloads: list[bytes], data: st.DataObject) -> None:
    """A reader may mix both: each frame comes once, in order."""
    decoder = FrameDecoder(max_frame_size=60)
    decoder.receive_data(encode_frames(payloads))
    spans = decoder.spans()
    frames = []
    while True:
        if data.draw(st.booleans()):
            span = next(spans)
            if span is None:
                break
            buffer, start, end = span
            frames.append(buffer[start:end])
        else:
            frame = decoder.next_frame()
            if frame is None:
                break
            frames.append(frame)
    assert frames == payloads
