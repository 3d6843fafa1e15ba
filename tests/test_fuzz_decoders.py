"""Every decoder that reads a peer's bytes, fed hostile input (docs/testing.md, "Fuzzing").

The property, for each: a valid value (or event), or the documented error, never
another exception, in bounded time and memory (tracemalloc peak) per input.  What
decodes as a message can also be encoded again (a task may forward what it got).

Budgets are settings profiles: ``decoders-ci`` (the default, a few seconds per
decoder) and ``decoders-long`` (``TRIOPYCOS_FUZZ=long``).  Below the properties,
one regression test per finding, each failing without its fix.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TypeVar

import cbor2
import pytest
from cbor_strategies import cbor_int, frame, head, hostile_cbor, mutate, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import tagged, values

from triopycos.protocol import FrameDecoder, ProtocolError, codec, discovery
from triopycos.protocol.codec import (
    MAX_BIGNUM_BYTES,
    MAX_SAME_HASH,
    TAG_DATETIME,
    TAG_DECIMAL,
    TAG_MAP,
    TAG_REGISTERED,
    Codec,
)
from triopycos.protocol.errors import DecodeError
from triopycos.protocol.files import (
    Data,
    DeleteRequest,
    End,
    FileReceiving,
    FileRefused,
    SendRequest,
    check_path,
    encode_delete_request,
    encode_end,
    encode_send_request,
    parse_reply,
)

T = TypeVar("T")

settings.register_profile(
    "decoders-ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "decoders-long",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile(
    "decoders-long" if os.environ.get("TRIOPYCOS_FUZZ") == "long" else "decoders-ci"
)

#: CPU seconds one input may cost: far above what any of them takes (milliseconds,
#: or a few times that under tracemalloc), far below what an expansion or a quadratic
#: blow-up costs.  CPU time of this process, not wall time: a loaded machine (other
#: processes on its cores) does not make it fail.
TIME_BOUND = 2.0
#: Python objects are bigger than the CBOR bytes they come from (an empty list is one
#: byte on the wire and 64 bytes decoded): this bounds the amplification.
BYTES_PER_INPUT_BYTE = 160
BASELINE = 256 * 1024


@contextlib.contextmanager
def bounded(size: int) -> Iterator[None]:
    """Fail if the block takes more than ``TIME_BOUND`` of CPU or its allocations peak
    above what an input of ``size`` bytes may cost."""
    tracemalloc.start()
    start = time.process_time()
    try:
        yield
    finally:
        elapsed = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_BOUND, f"{elapsed:.2f} s for {size} bytes"
    assert peak < BASELINE + BYTES_PER_INPUT_BYTE * size, f"{peak} bytes for {size} bytes"


def outcome(fn: Callable[[], T], *errors: type[Exception]) -> T | Exception:
    try:
        return fn()
    except errors as exc:
        return exc


# -- the session codec ----------------------------------------------------------------

_codec = Codec()


def check_codec(data: bytes) -> None:
    with bounded(len(data)):
        got = outcome(lambda: _codec.decode(data), DecodeError)
    if isinstance(got, DecodeError):
        assert "\n" not in str(got) and "\x1b" not in str(got)
        return
    # Forwarding what arrived: it encodes again (unless deeper than our own max_depth,
    # which decoding allows a little beyond), and the next peer decodes it.
    with bounded(len(data)):
        again = outcome(lambda: _codec.encode(got), ValueError)
    if isinstance(again, Exception):
        assert isinstance(again, ValueError) and "max_depth" in str(again)
        return
    _codec.decode(again)


@FUZZ
@given(hostile_cbor())
def test_codec_on_hostile_cbor(data: bytes) -> None:
    check_codec(data)


@FUZZ
@given(mutated(values.map(_codec.encode)))
def test_codec_on_mutated_messages(data: bytes) -> None:
    check_codec(data)


# -- frames ---------------------------------------------------------------------------


def reference_frames(stream: bytes, limit: int) -> tuple[list[bytes], str]:
    frames: list[bytes] = []
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < 4:
            return frames, "partial"
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > limit:
            return frames, "too large"
        if len(stream) - pos - 4 < size:
            return frames, "partial"
        frames.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames, "clean"


frame_streams = st.lists(
    st.binary(max_size=40).map(frame) | st.binary(max_size=12), max_size=8
).map(b"".join)


@FUZZ
@given(frame_streams, st.integers(0, 64), st.lists(st.integers(1, 9), min_size=1))
def test_frame_decoder_on_any_stream_and_chunking(
    stream: bytes, limit: int, sizes: list[int]
) -> None:
    expected, ending = reference_frames(stream, limit)
    decoder = FrameDecoder(limit)
    got: list[bytes] = []
    pos = 0
    with bounded(len(stream)):
        try:
            index = 0
            while pos < len(stream):
                size = sizes[index % len(sizes)]
                index += 1
                decoder.receive_data(stream[pos : pos + size])
                pos += size
                while (payload := decoder.next_frame()) is not None:
                    got.append(payload)
            decoder.eof()
            while (payload := decoder.next_frame()) is not None:
                got.append(payload)
            result = "clean"
        except ProtocolError as exc:
            result = "too large" if "exceeds the limit" in str(exc) else "partial"
    assert (got, result) == (expected, ending)
    assert all(type(payload) is bytes for payload in got)


def test_a_frame_dribbled_in_tiny_pieces_is_held_compactly() -> None:
    # Finding: each received chunk was kept as a bytes object of its own until the
    # frame was complete, ~40 bytes of object per 1-2 bytes received.
    body = 200_000
    decoder = FrameDecoder(1 << 20)
    decoder.receive_data(struct.pack(">I", body + 1))
    tracemalloc.start()
    try:
        for _ in range(body // 2):
            decoder.receive_data(b"ab")
            assert decoder.next_frame() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * body
    decoder.receive_data(b"c")
    assert decoder.next_frame() == b"ab" * (body // 2) + b"c"


# -- file-transfer messages -----------------------------------------------------------

requests = st.builds(
    SendRequest,
    name=st.text(max_size=12),
    dir=st.none() | st.text(max_size=12),
    size=st.integers(0, 40),
    mode=st.integers(0, 0o7777),
    atime_ns=st.integers(-(2**63), 2**63 - 1),
    mtime_ns=st.integers(-(2**63), 2**63 - 1),
    overwrite=st.booleans(),
    timeout=st.none() | st.floats(0.1, 100),
).map(encode_send_request) | st.builds(
    DeleteRequest, name=st.text(max_size=12), dir=st.none() | st.text(max_size=12)
).map(encode_delete_request)
file_streams = (
    hostile_cbor().map(frame)
    | requests.flatmap(lambda data: mutate(data))
    | st.tuples(requests, st.binary(max_size=60), st.sampled_from([b"", encode_end()])).map(
        b"".join
    )
)


@FUZZ
@given(file_streams, st.integers(1, 16), st.integers(1, 9), st.none() | st.integers(0, 30))
def test_file_receiving_on_hostile_streams(
    stream: bytes, max_chunk: int, piece: int, max_size: int | None
) -> None:
    proto = FileReceiving(max_chunk)
    with bounded(len(stream)):
        try:
            for start in range(0, len(stream), piece):
                proto.receive_data(stream[start : start + piece])
                while (event := proto.next_event()) is not None:
                    if isinstance(event, SendRequest):
                        check_path(event.dir, event.name)
                        proto.go(event.size, max_size)
                    elif isinstance(event, DeleteRequest):
                        check_path(event.dir, event.name)
                        proto.done()
                        return
                    elif isinstance(event, End):
                        proto.done()
                        return
                    else:
                        assert isinstance(event, Data) and len(event.data) > 0
            proto.eof()
        except ProtocolError as exc:  # FileRefused is one
            assert "\n" not in str(exc)


@FUZZ
@given(hostile_cbor())
def test_file_replies_on_hostile_cbor(data: bytes) -> None:
    with bounded(len(data)):
        outcome(lambda: parse_reply(data), ProtocolError)


@FUZZ
@given(st.none() | st.text(max_size=30), st.text(max_size=30))
def test_check_path_on_any_text(dir: str | None, name: str) -> None:
    try:
        parts, base = check_path(dir, name)
    except FileRefused as exc:
        assert "\n" not in exc.reason and "\x00" not in exc.reason
        return
    assert base == name and ".." not in parts and "/" not in name


# -- discovery datagrams --------------------------------------------------------------

SECRET = "fuzz secret"


def signed(body: bytes, version: int = discovery.DISCOVERY_VERSION) -> bytes:
    message = discovery.MAGIC + bytes([version]) + body
    return message + discovery._mac(SECRET.encode(), message)


announcements = st.builds(
    discovery.Announcement,
    kind=st.sampled_from(["announce", "ping", "forward"]),
    node_id=st.binary(min_size=16, max_size=16),
    name=st.text(max_size=20),
    locations=st.lists(
        st.tuples(st.text(min_size=1, max_size=15), st.integers(1, 65535)), min_size=1, max_size=3
    ).map(tuple),
    to=st.text(max_size=15),
    relay=st.booleans(),
    multicast=st.booleans(),
)
datagrams = (
    hostile_cbor().map(signed)
    | announcements.map(lambda a: discovery.encode(a, SECRET)[5:-32]).flatmap(mutate).map(signed)
    | announcements.map(lambda a: discovery.encode(a, SECRET)).flatmap(mutate)
    | st.binary(max_size=1500)
)


@FUZZ
@given(datagrams)
def test_discovery_decode_on_hostile_datagrams(data: bytes) -> None:
    with bounded(len(data)):
        got = outcome(lambda: discovery.decode(data, SECRET), discovery.BadDatagram)
    if isinstance(got, discovery.BadDatagram):
        assert "\n" not in got.reason
    else:
        assert isinstance(got, discovery.Announcement)


# -- regressions: one per finding -----------------------------------------------------


def bignum(size: int, negative: bool = False) -> bytes:
    return bytes([0xC3 if negative else 0xC2]) + head(2, size) + b"\x01" * size


def test_bignums_are_bounded() -> None:
    # Finding: a 64 MiB frame could hold one int of 500 million bits, which Python
    # refuses to print (ValueError where a log line formats it) and converts to text
    # in quadratic time.
    assert codec.decode(bignum(MAX_BIGNUM_BYTES)) == int.from_bytes(b"\x01" * 1024, "big")
    assert codec.decode(bignum(MAX_BIGNUM_BYTES, True)) == -1 - int.from_bytes(b"\x01" * 1024)
    for data in (bignum(MAX_BIGNUM_BYTES + 1), bignum(100_000, True)):
        with pytest.raises(DecodeError, match="bignum of"):
            codec.decode(data)
    with pytest.raises(DecodeError, match="byte string"):
        codec.decode(b"\xc2\x61x")
    str(codec.decode(bignum(MAX_BIGNUM_BYTES)))  # every int that arrives prints


def test_an_int_a_peer_would_refuse_is_refused_when_sending() -> None:
    fits = 2 ** (8 * MAX_BIGNUM_BYTES) - 1
    assert codec.decode(codec.encode([fits, -fits - 1, b"\xc2" * 2000])) == [
        fits,
        -fits - 1,
        b"\xc2" * 2000,
    ]
    for value in ([fits + 1], {"k": (1, -fits - 2)}):
        with pytest.raises(ValueError, match="int of more than"):
            codec.encode(value)


@pytest.mark.parametrize(
    "text",
    ["1e3001", "1e-1000000", "9" * 1025, "NaN" + "1" * 1025, "1" * 5000, "1e999999999"],
)
def test_decimals_are_bounded(text: str) -> None:
    # Finding: int(Decimal("1e999999")) takes 40 s, and format(Decimal("1e-999999999"),
    # "f") builds a 1 GB string: both were accepted from a peer.
    with pytest.raises(DecodeError, match="Decimal"):
        codec.decode(tagged(TAG_DECIMAL, text))
    if len(text) < 1100:
        with pytest.raises(ValueError, match="a peer would refuse it"):
            codec.encode(Decimal(text))


def test_decimals_within_bounds_travel() -> None:
    for text in ["1e3000", "1e-999999", "9" * 1024, "-0", "sNaN", "NaN12", "-Infinity"]:
        assert str(codec.decode(codec.encode(Decimal(text)))) == str(Decimal(text))
    with pytest.raises(DecodeError, match="not a Decimal"):
        codec.decode(tagged(TAG_DECIMAL, "1_0\n\x1b"))


#: CPU seconds to refuse 20,000 keys of one hash value (see the test below).
COLLISION_CPU_BOUND = 1.5


def colliding_ints(count: int) -> list[int]:
    return [k * (2**61 - 1) for k in range(1, count + 1)]


def test_keys_with_one_hash_are_refused_before_they_cost() -> None:
    # Finding: 16,000 int keys congruent modulo 2**61-1 (one hash value) in a 200 KB
    # frame took 3 s to decode (quadratic); a 64 MiB frame, hours.
    keys = colliding_ints(20_000)
    flat: list[object] = []
    for key in keys:
        flat += [key, 0]
    for data in (
        tagged(TAG_MAP, flat),
        tagged(258, keys),
        tagged(codec.TAG_FROZENSET, keys),
    ):
        start = time.process_time()
        with pytest.raises(DecodeError, match="one hash value"):
            codec.decode(data)
        # Milliseconds when refused early; the quadratic insertion this guards
        # against costs seconds of CPU (about 5 s for these 20,000 keys).
        assert time.process_time() - start < COLLISION_CPU_BOUND
    # A native map may only have str or bytes keys (randomized hashes).
    native = head(5, len(keys)) + b"".join(cbor_int(key) + b"\x00" for key in keys)
    with pytest.raises(DecodeError, match="map key"):
        codec.decode(native)


def test_a_few_keys_with_one_hash_still_travel() -> None:
    few = colliding_ints(MAX_SAME_HASH)
    assert codec.decode(codec.encode(set(few))) == set(few)
    assert codec.decode(codec.encode(dict.fromkeys(few, 1))) == dict.fromkeys(few, 1)
    with pytest.raises(DecodeError, match="one hash value"):
        codec.decode(tagged(258, colliding_ints(MAX_SAME_HASH + 1)))


def test_dicts_with_other_keys_travel_as_a_tagged_map() -> None:
    value = {1: "a", (2, 3): {"x": {4.5: None}}, "s": 1}
    data = codec.encode(value)
    assert data[:5] == head(6, TAG_MAP)
    assert codec.decode(data) == value
    assert codec.encode({"s": 1, b"b": 2}) == cbor2.dumps({"s": 1, b"b": 2})
    for bad in ([1], [1, 2, 1, 3], [[1], 2]):
        with pytest.raises(DecodeError, match="map"):
            codec.decode(tagged(TAG_MAP, bad))


def test_undefined_and_simple_values_can_be_sent_on() -> None:
    for data in (b"\xf7", b"\xf0", b"\xf8\xff", b"\x82\xf7\xf8\x20"):
        assert codec.encode(codec.decode(data)) == data


def test_datetime_payloads_are_bounded() -> None:
    with pytest.raises(DecodeError, match="datetime text of"):
        codec.decode(tagged(TAG_DATETIME, "2020-01-01" + "0" * 10_000))
    with pytest.raises(DecodeError, match="offset"):
        codec.decode(tagged(TAG_DATETIME, ["2020-01-01T00:00:00", 2**70]))
    with pytest.raises(DecodeError, match="not an ISO datetime") as caught:
        codec.decode(tagged(TAG_DATETIME, "line\nforged\x1b[31m"))
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_decode_errors_never_quote_a_peer_raw() -> None:
    name = "evil\nFORGED LOG LINE\x1b[2J" + "x" * 1000
    for data in (
        tagged(TAG_REGISTERED, [name, {}]),
        cbor2.dumps({name: 1, "k": 2})[:-1] + b"\x62\xff\xfe",  # invalid UTF-8 after it
        b"\xa2" + cbor2.dumps(name) + b"\x01" + cbor2.dumps(name) + b"\x02",  # duplicate
    ):
        with pytest.raises(DecodeError) as caught:
            codec.decode(data)
        text = str(caught.value)
        assert "\n" not in text and "\x1b" not in text and len(text) < 400, text


def test_file_messages_never_quote_a_peer_raw() -> None:
    evil = "a\nFORGED\x1b[2J" * 100
    proto = FileReceiving(16)
    proto.receive_data(frame(codec.encode([evil, {"name": "f", "dir": None}])))
    with pytest.raises(ProtocolError) as caught:
        proto.next_event()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
    with pytest.raises(ProtocolError) as caught:
        parse_reply(codec.encode([evil, 1, 2]))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
    with pytest.raises(FileRefused) as refused:
        check_path("/" + evil, "f")
    assert "\n" not in refused.value.reason and len(refused.value.reason) < 200
    proto = FileReceiving(16)
    proto.receive_data(frame(codec.encode(["send", {"name": "f", evil: 1}])))
    with pytest.raises(ProtocolError) as caught:
        proto.next_event()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_discovery_bodies_are_plain_cbor() -> None:
    # Finding: the body was decoded with all of cbor2's tags (after the MAC, so only
    # by a holder of the secret): shared references, bignums, regexes...
    good: dict[object, object] = {
        "kind": "announce",
        "id": b"\x01" * 16,
        "name": "n",
        "locations": [["10.0.0.1", 1]],
        "multicast": False,
    }
    assert discovery.decode(signed(cbor2.dumps(good)), SECRET).name == "n"
    for value in (2**70, cbor2.CBORTag(35, "a+"), cbor2.CBORTag(29, 0)):
        with pytest.raises(discovery.BadDatagram, match="not accepted"):
            discovery.decode(signed(cbor2.dumps({**good, "name": value})), SECRET)
    with pytest.raises(discovery.BadDatagram, match="map key"):
        discovery.decode(signed(cbor2.dumps({**good, 1: 2})), SECRET)
    with pytest.raises(discovery.BadDatagram) as caught:
        discovery.decode(signed(cbor2.dumps({**good, "kind": "x\n\x1b" * 50})), SECRET)
    assert "\n" not in caught.value.reason and len(caught.value.reason) < 200
