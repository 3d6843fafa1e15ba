"""Structure-aware property tests of what a stranger can feed the handshake.

Generated CBOR with every tag cbor2 knows, big integers, deep nesting, shared
references, undefined and simple values, floats, indefinite lengths, oversized and
truncated items, and mutations of a valid exchange (bytes and fields).  The property,
for every input, on both sides: a valid event or ``HandshakeFailed``, never another
exception, in bounded time and memory (tracemalloc peak), and a reason without
control characters.  ``fuzz/fuzz_handshake.py`` runs the same drive for long.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import ipaddress
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triopycos.protocol.framing import encode_frame
from triopycos.protocol.handshake import (
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Authenticated,
    Handshake,
    HandshakeFailed,
)
from triopycos.protocol.strict_cbor import CBORRefused, loads

KEY = bytes(range(32))
# Per input: generous bounds (a slow CI machine under load), orders of magnitude
# below what the attacks in issue 16 cost (seconds, hundreds of MB).
TIME_BOUND = 0.5
MEMORY_BOUND = 512 * 1024
# Every semantic tag cbor2 decodes itself, and a few it does not know.
KNOWN_TAGS = [0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261]
TAGS = [*KNOWN_TAGS, 1004, 55799, 6, 27, 2**32, 2**64 - 1]
PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def side(initiator: bool) -> Handshake:
    return Handshake(
        initiator=initiator,
        key=KEY,
        node_id=(b"I" if initiator else b"R") * 16,
        nonce=(b"i" if initiator else b"r") * 32,
        name="initiator" if initiator else "responder",
        locations=[("127.0.0.1", 9705)],
    )


def exchange() -> tuple[bytes, bytes]:
    """A valid exchange: (what the responder receives, what the initiator receives)."""
    responder, initiator = side(False), side(True)
    to_initiator, to_responder = responder.data_to_send(), initiator.data_to_send()
    initiator.receive_data(to_initiator)
    initiator.next_event()
    to_responder += initiator.data_to_send()
    responder.receive_data(to_responder)
    assert isinstance(responder.next_event(), Authenticated)
    to_initiator += responder.data_to_send()
    return to_responder, to_initiator


TO_RESPONDER, TO_INITIATOR = exchange()


def frames(stream: bytes) -> list[bytes]:
    payloads = []
    while stream:
        size = int.from_bytes(stream[:4], "big")
        payloads.append(stream[4 : 4 + size])
        stream = stream[4 + size :]
    return payloads


@pytest.fixture(autouse=True)
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def drive(initiator: bool, stream: bytes, read: int = 4096) -> object:
    """Feed ``stream`` to a fresh side in reads of ``read`` bytes; check the property;
    the event or the failure."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.process_time()
    machine = side(initiator)
    outcome: object = None
    for start in range(0, max(len(stream), 1), read):
        machine.receive_data(stream[start : start + read])
        try:
            outcome = machine.next_event()
        except HandshakeFailed as failure:
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(failure))
            outcome = failure
        machine.data_to_send()
        if outcome is not None:
            break
    assert time.process_time() - started < TIME_BOUND
    assert tracemalloc.get_traced_memory()[1] - base < MEMORY_BOUND
    return outcome


def check_strict(payload: bytes) -> None:
    """The strict reader refuses, or reads what cbor2 reads."""
    try:
        value = loads(payload, max_depth=3, max_items=64)
    except CBORRefused:
        return
    assert cbor2.loads(payload) == value


# -- generated values ---------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64 - 4, max_value=2**64 + 4),
    st.integers(min_value=-(2**64) - 4, max_value=-(2**64) + 4),
    st.sampled_from([20_000]).map(lambda bits: 1 << bits),  # str() refuses to print it
    st.floats(allow_nan=True),
    st.binary(max_size=64),
    st.text(max_size=32),
    st.just(cbor2.undefined),
    st.sampled_from([0, 19, 23, 32, 255]).map(cbor2.CBORSimpleValue),
    st.just(decimal.Decimal("1.5e-3")),
    st.just(fractions.Fraction(3, 7)),
    st.just(uuid.UUID(int=7)),
    st.just(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),
    st.just(ipaddress.ip_address("127.0.0.1")),
)


def _tagged(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cbor2.CBORTag, st.sampled_from(TAGS), children)


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
        _tagged(children),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)


def encoded(value: Any, sharing: bool) -> bytes:
    try:
        return cbor2.dumps(value, value_sharing=sharing)
    except (cbor2.CBOREncodeError, TypeError, ValueError):
        return cbor2.dumps(repr(type(value)))


HELLO_FIELDS = ["triopycos", "id", "name", "locations", "nonce", "purpose", "expect", "proof"]


@PROFILE
@given(st.booleans(), values, st.booleans())
def test_any_generated_value_as_a_frame(initiator: bool, value: Any, sharing: bool) -> None:
    payload = encoded(value, sharing)
    check_strict(payload)
    outcome = drive(initiator, encode_frame(payload[:MAX_HANDSHAKE_FRAME]))
    assert isinstance(outcome, HandshakeFailed | type(None))


@PROFILE
@given(st.booleans(), st.sampled_from(HELLO_FIELDS), values, st.booleans())
def test_a_valid_frame_with_one_field_replaced(
    initiator: bool, field: str, value: Any, sharing: bool
) -> None:
    # The first frame each side receives, with one field set to a generated value.
    first = frames(TO_INITIATOR if initiator else TO_RESPONDER)[0]
    message = cbor2.loads(first) | {field: value}
    payload = encoded(message, sharing)
    check_strict(payload)
    drive(initiator, encode_frame(payload[:MAX_HANDSHAKE_FRAME]))


# -- raw bytes: headers the encoder would never write --------------------------------


def _head(major: int, argument: int) -> bytes:
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise ValueError(argument)


raw_heads = st.one_of(
    st.builds(_head, st.integers(0, 7), st.integers(0, 2**64 - 1)),
    st.integers(0, 255).map(lambda b: bytes([b])),  # reserved, indefinite, break...
    st.sampled_from([b"\x5f", b"\x7f", b"\x9f", b"\xbf", b"\xff", b"\xf7", b"\xf9\x7e\x00"]),
)


@st.composite
def raw_items(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.one_of(raw_heads, st.binary(max_size=16)), max_size=24))
    return b"".join(parts)


def nested(depth: int, opener: bytes) -> bytes:
    return opener * depth + b"\x00"


def shared_graph(levels: int, width: int) -> bytes:
    """Tags 28/29: each level an array of ``width`` references to the level inside
    it; ``width**levels`` values when formatted (issue 16's 14-second freeze).  The
    decoder numbers shareables outermost first: level ``j`` is index ``levels - j``."""
    item = b"\xd8\x1c" + _head(4, 1) + b"\x00"
    for level in range(1, levels + 1):
        ref = b"\xd8\x1d" + _head(0, levels - (level - 1))
        item = b"\xd8\x1c" + _head(4, width) + item + ref * (width - 1)
    return item


def test_the_shared_graph_is_what_it_claims() -> None:
    graph = cbor2.loads(shared_graph(3, 4))
    assert len(graph) == 4 and all(child is graph[0] for child in graph)
    assert len(shared_graph(5, 40)) < 800


@PROFILE
@given(st.booleans(), raw_items(), st.integers(1, 64))
def test_raw_bytes_in_a_frame(initiator: bool, payload: bytes, read: int) -> None:
    check_strict(payload)
    drive(initiator, encode_frame(payload[:MAX_HANDSHAKE_FRAME]), read)


@pytest.mark.parametrize(
    "payload",
    [
        nested(4000, b"\x81"),  # 4000 nested arrays
        nested(2000, b"\xa1\x61a"),  # 2000 nested maps
        nested(4000, b"\xc6"),  # 4000 nested tags
        shared_graph(5, 40),
        _head(4, 2**64 - 1),  # an array that claims 2**64 items
        _head(2, 2**32),  # a byte string that claims 4 GiB
        _head(5, 1000) + b"\x61a\x00" * 1000,  # 1000 entries of one key (over the count)
        b"\xc2\x59\x0f\xa0" + b"\xff" * 4000,  # a 32000-bit bignum
    ],
)
@pytest.mark.parametrize("initiator", [False, True])
def test_hostile_classics(initiator: bool, payload: bytes) -> None:
    with pytest.raises(CBORRefused):
        loads(payload, max_depth=3, max_items=64)
    outcome = drive(initiator, encode_frame(payload[:MAX_HANDSHAKE_FRAME]))
    assert isinstance(outcome, HandshakeFailed)


# -- mutations of a valid exchange -----------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, stream: bytes) -> bytes:
    data = bytearray(stream)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(raw_heads)
    return bytes(data)


@PROFILE
@given(mutated(TO_RESPONDER), st.integers(1, 300))
def test_mutations_of_what_the_responder_receives(stream: bytes, read: int) -> None:
    outcome = drive(False, stream, read)
    if isinstance(outcome, Authenticated):
        assert stream.startswith(TO_RESPONDER)  # only an intact exchange authenticates


@PROFILE
@given(mutated(TO_INITIATOR), st.integers(1, 300))
def test_mutations_of_what_the_initiator_receives(stream: bytes, read: int) -> None:
    outcome = drive(True, stream, read)
    if isinstance(outcome, Authenticated):
        assert stream.startswith(TO_INITIATOR)


def test_the_intact_exchange_authenticates_both_sides() -> None:
    # The property tests' baseline: the recorded exchange itself is valid.
    assert isinstance(drive(False, TO_RESPONDER), Authenticated)
    assert isinstance(drive(True, TO_INITIATOR), Authenticated)
    assert cbor2.loads(frames(TO_RESPONDER)[0])["triopycos"] == PROTOCOL_VERSION
