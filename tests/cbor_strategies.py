"""Hypothesis strategies for hostile CBOR: raw byte strings built item by item.

``cbor_items()`` draws well-formed-looking CBOR with everything a peer could put in
a frame: every tag cbor2 decodes by itself and ours, bignums around our limit,
shared and string references, undefined and every simple value, floats of each
width, invalid UTF-8, indefinite-length items and stray breaks, non-minimal and
oversized length headers, and deep nesting.  ``hostile_cbor()`` adds truncation and
byte mutations on top; ``mutated(payloads)`` mutates valid messages.  Used by
``tests/test_fuzz_decoders.py``; the atheris harnesses in ``fuzz/`` start from the
same ideas with coverage guidance.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from triopycos.protocol import codec

# Tags cbor2 decodes itself, ours, and a few nobody uses.
OUR_TAGS = [
    codec.TAG_TUPLE,
    codec.TAG_FROZENSET,
    codec.TAG_DATETIME,
    codec.TAG_DECIMAL,
    codec.TAG_MAP,
    codec.TAG_LOCATION,
    codec.TAG_REF,
    codec.TAG_MONITOR_STATUS,
    codec.TAG_PEER_STATUS,
    codec.TAG_EXCEPTION,
    codec.TAG_CLASS,
    codec.TAG_REGISTERED,
]
ALL_TAGS = (
    sorted(
        codec.CBOR2_TAGS_KEPT | codec.CBOR2_TAGS_REFUSED | {6, 24, 21, 22, 23, 32, 33, 34, 0xFFFF}
    )
    + OUR_TAGS
)


def head(major: int, value: int, width: int | None = None) -> bytes:
    """A CBOR item head; ``width`` forces a (possibly non-minimal) argument size."""
    if width is None:
        if value < 24:
            return bytes([major << 5 | value])
        width = 1 if value < 1 << 8 else 2 if value < 1 << 16 else 4 if value < 1 << 32 else 8
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + value.to_bytes(width, "big")


def cbor_int(value: int) -> bytes:
    """A non-negative int as CBOR: a plain head, or a bignum beyond 64 bits."""
    if value < 1 << 64:
        return head(0, value)
    magnitude = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return b"\xc2" + head(2, len(magnitude)) + magnitude


@st.composite
def _head(draw: st.DrawFn, major: int, value: int) -> bytes:
    widths = [None, 1, 2, 4, 8]
    width = draw(st.sampled_from(widths))
    if width is not None and value >= 1 << (8 * width):
        width = None
    return head(major, value, width)


def _uint() -> st.SearchStrategy[int]:
    return st.integers(0, 23) | st.integers(0, 2**64 - 1) | st.sampled_from([24, 255, 256, 2**32])


@st.composite
def _scalar(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(_head(0, draw(_uint())))
    if kind == 1:
        return draw(_head(1, draw(_uint())))
    if kind == 2:
        data = draw(st.binary(max_size=40))
        return draw(_head(2, len(data))) + data
    if kind == 3:
        text = draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            text = draw(st.binary(max_size=8))  # often invalid UTF-8
        return draw(_head(3, len(text))) + text
    if kind == 4:  # false, true, null, undefined, simple values 0-19 and 32-255
        return bytes([0xE0 | draw(st.integers(0, 23))])
    if kind == 5:
        return b"\xf8" + bytes([draw(st.integers(0, 255))])  # < 32 is malformed
    if kind == 6:
        width = draw(st.sampled_from([2, 4, 8]))
        code = {2: 0xF9, 4: 0xFA, 8: 0xFB}[width]
        return bytes([code]) + draw(st.binary(min_size=width, max_size=width))
    if kind == 7:  # bignum: around our limit
        size = draw(st.sampled_from([0, 1, 8, 9, 64, codec.MAX_BIGNUM_BYTES, 1025, 1400]))
        return bytes([0xC2 | draw(st.integers(0, 1))]) + head(2, size) + b"\xff" * size
    if kind == 8:  # a reserved or stray byte: 0x1c-0x1e infos, a break, an indefinite
        return bytes([draw(st.sampled_from([0x1C, 0x3D, 0x5E, 0xFF, 0x5F, 0x7F, 0x9F, 0xBF]))])
    # A length header far beyond what follows.
    return bytes([draw(st.sampled_from([0x5B, 0x7B, 0x9B, 0xBB]))]) + b"\x7f" + b"\xff" * 7


def _decimal_text() -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "1",
            "-0",
            "NaN",
            "sNaN",
            "-Infinity",
            "NaN123",
            "1e999999999",
            "1e-999999999",
            "1e3000",
            "1e3001",
            "1e-999999",
            "1e-1000000",
            "9" * 1024,
            "9" * 1025,
            "1_000",
            " 1 ",
            "1e99999999999999999999",
        ]
    )


@st.composite
def _special(draw: st.DrawFn) -> bytes:
    """Items of the shapes our decoders look at, with borderline contents."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        text = draw(_decimal_text()).encode()
        return head(6, codec.TAG_DECIMAL) + head(3, len(text)) + text
    if kind == 1:
        text = draw(
            st.sampled_from(["2020-01-02T03:04:05", "2020-01-02T03:04:05+01:00", "x" * 100, ""])
        ).encode()
        if draw(st.booleans()):
            offset = draw(st.sampled_from([0, 3600 * 10**6, 86_400 * 10**6, -(2**63)]))
            sign_major = 0 if offset >= 0 else 1
            number = head(sign_major, offset if offset >= 0 else -1 - offset)
            return head(6, codec.TAG_DATETIME) + b"\x82" + head(3, len(text)) + text + number
        return head(6, codec.TAG_DATETIME) + head(3, len(text)) + text
    if kind == 2:  # many keys sharing one hash value (ints congruent modulo 2**61-1)
        count = draw(st.integers(codec.MAX_SAME_HASH - 1, codec.MAX_SAME_HASH + 3))
        keys = [cbor_int(k * (2**61 - 1)) for k in range(1, count + 1)]
        if draw(st.booleans()):
            body = b"".join(key + b"\x00" for key in keys)
            return head(6, codec.TAG_MAP) + head(4, 2 * count) + body
        return head(6, 258) + head(4, count) + b"".join(keys)
    if kind == 3:  # shared references: a value and references to it
        return head(6, 28) + b"\x82\x01\x02" + head(6, 29) + b"\x00"
    if kind == 4:  # a string-reference namespace
        return head(6, 256) + b"\x82\x63abc" + head(6, 25) + b"\x00"
    name = draw(st.sampled_from(["builtins.ValueError", "builtins.OSError", "x", "builtins.int"]))
    return (
        head(6, codec.TAG_EXCEPTION)
        + b"\x83"
        + head(3, len(name))
        + name.encode()
        + b"\x82\x01\x61x"
        + b"\x60"
    )


def cbor_items(max_leaves: int = 30) -> st.SearchStrategy[bytes]:
    """One CBOR item (possibly malformed inside)."""

    def extend(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        arrays = st.lists(inner, max_size=5).flatmap(
            lambda items: _head(4, len(items)).map(lambda h: h + b"".join(items))
        )
        maps = st.lists(st.tuples(inner, inner), max_size=4).flatmap(
            lambda pairs: _head(5, len(pairs)).map(lambda h: h + b"".join(k + v for k, v in pairs))
        )
        tagged = st.tuples(st.sampled_from(ALL_TAGS), inner).map(lambda tv: head(6, tv[0]) + tv[1])
        indefinite = st.lists(inner, max_size=3).flatmap(
            lambda items: st.sampled_from([b"\x9f", b"\xbf", b"\x5f", b"\x7f"]).map(
                lambda start: start + b"".join(items) + b"\xff"
            )
        )
        return arrays | maps | tagged | indefinite

    return st.recursive(_scalar() | _special(), extend, max_leaves=max_leaves)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """Nesting around and far beyond the decoders' depth limits."""
    levels = draw(st.sampled_from([200, 255, 256, 264, 265, 900, 5000]))
    opener = draw(st.sampled_from([b"\x81", b"\xa1\x60", head(6, codec.TAG_TUPLE) + b"\x81"]))
    return opener * levels + b"\x00"


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, inserted or removed."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        position = draw(st.integers(0, len(buf)))
        if op == 0 and position < len(buf):
            buf[position] = draw(st.integers(0, 255))
        elif op == 1:
            buf[position:position] = draw(st.binary(min_size=1, max_size=9))
        elif op == 2:
            del buf[position : position + draw(st.integers(1, 8))]
        else:
            del buf[position:]
    return bytes(buf)


def hostile_cbor() -> st.SearchStrategy[bytes]:
    """Raw bytes for a decoder: generated items, mutated or not, deep nesting, or noise."""
    items = cbor_items()
    return (
        items
        | items.flatmap(lambda data: mutate(data))
        | deep()
        | st.binary(max_size=64)
        | st.lists(items, min_size=2, max_size=3).map(b"".join)  # trailing items
    )


def mutated(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings, mutated."""
    return payloads.flatmap(lambda data: mutate(data))


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload
