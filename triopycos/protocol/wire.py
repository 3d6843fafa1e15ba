"""The small parts of the session's wire form: the kinds' numbers, checks of a
peer's values, and the CBOR of message envelopes written and read by hand.

Checks raise ``MalformedMessage`` with a reason that quotes the peer's values only as
``printable.describe`` shows them (it is logged).

By hand: an envelope (the kind and the ints of a task message, a delivery, a reply)
costs cbor2 more as an outer list than the small message it carries, so the session
writes it and the codec encodes only the payload (and reads it the same way back).
The bytes are the ones cbor2 writes (the shortest head for every int and length;
``test_session.py`` compares them); whatever these helpers do not cover raises
``NotByHand`` and goes through the codec whole.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from .printable import describe

__all__ = [
    "LOCATABLE",
    "MAX_HOPS",
    "MAX_SEND_ID",
    "NOT_FORWARDED",
    "TASK_ID_LIMIT",
    "Kind",
    "MalformedMessage",
    "NotByHand",
    "kind_name",
]


class Kind:
    """Message kinds: plain ints on the wire."""

    REPLY: Final = 0
    TASK_SEND: Final = 1
    TASK_DELIVER: Final = 2
    TASK_TERMINATE: Final = 3
    TASK_MONITOR: Final = 4
    TASK_FINISH: Final = 5
    TASK_ALIVE: Final = 6
    LOCATE: Final = 7
    CHANNEL_SEND: Final = 8
    CHANNEL_DELIVER: Final = 9
    CHANNEL_SUBSCRIBE: Final = 10
    CHANNEL_UNSUB: Final = 11
    PING: Final = 12
    PONG: Final = 13
    BYE: Final = 14
    RPS_CALL: Final = 15
    TASK_RESULT: Final = 16
    NODE_STATUS: Final = 17
    ECHO: Final = 18
    TASK_LINK: Final = 19
    TASK_UNLINK: Final = 20


_KIND_NAMES: Final = {value: name for name, value in vars(Kind).items() if name.isupper()}


def kind_name(kind: object) -> str:
    """The name of a kind for log lines ("TASK_SEND", "kind 99", "unknown")."""
    if type(kind) is int:
        return _KIND_NAMES.get(kind) or f"kind {kind if -(2**63) <= kind < 2**63 else 'huge'}"
    return "unknown"


#: Channels a forwarded message may pass through: a message that has passed this
#: many is dropped (and a peer's message claiming more is malformed).  No hierarchy
#: of channels is this deep (see ``_send_ids.py``).
MAX_HOPS: Final = 256
#: Bytes of a channel send id a peer's message may carry (ids are opaque to other
#: nodes; see ``_send_ids.py``).
MAX_SEND_ID: Final = 64
#: Task ids are 1 .. TASK_ID_LIMIT - 1.  The bound also bounds hash collisions: a
#: peer's ids become dict keys (pushed results, watches), and big multiples of
#: 2**61 - 1 all hash alike, which would make inserting them quadratic.
TASK_ID_LIMIT: Final = 2**63
#: What ``Locate`` may look for.
LOCATABLE: Final = ("task", "channel", "rps")


class MalformedMessage(Exception):
    """A received message without the shape of its kind."""


class NotByHand(Exception):
    """An envelope field the hand-written encoder does not cover: use the codec."""


def check_count(message: list[Any], count: int) -> None:
    if len(message) != count:
        raise MalformedMessage(f"{len(message) - 1} fields instead of {count - 1}")


def request_id(message: list[Any], count: int) -> int:
    """A request's id, after checking it has ``count`` items with the kind."""
    check_count(message, count)
    rid = message[1]
    if type(rid) is not int:
        raise MalformedMessage(f"request id is {describe(rid)}")
    return rid


def task_id(value: object) -> int:
    if type(value) is not int:
        raise MalformedMessage(f"task id is {describe(value)}")
    if not 0 < value < TASK_ID_LIMIT:
        raise MalformedMessage("task id is out of range")
    return value


def name(value: object, what: str) -> str:
    if type(value) is not str:
        raise MalformedMessage(f"{what} is {describe(value)}")
    return value


def timeout(value: object) -> float | None:
    """None or seconds >= 0 (``not >= 0`` refuses NaN)."""
    if value is None:
        return None
    if (type(value) is not int and type(value) is not float) or not value >= 0:
        raise MalformedMessage(f"timeout is {describe(value)}")
    return float(value)


def forwarded(value: object) -> tuple[bytes, int]:
    """The send id and hop count a forwarded channel message carries."""
    if type(value) is not list or len(value) != 2:
        raise MalformedMessage(f"a forwarded channel message's mark is {describe(value)}")
    sent, hops = value
    if type(sent) is not bytes or not 0 < len(sent) <= MAX_SEND_ID:
        raise MalformedMessage(f"a channel send id is {describe(sent)}")
    if type(hops) is not int or not 0 < hops <= MAX_HOPS:
        raise MalformedMessage(f"a channel message's hops are {describe(hops)} (1 to {MAX_HOPS})")
    return sent, hops


#: ``(sent, hops)`` of a channel message no channel forwarded.
NOT_FORWARDED: Final[tuple[None, int]] = (None, 0)


# -- envelopes by hand -----------------------------------------------------------------

_BYTES: Final = [bytes((i,)) for i in range(256)]
_pack_8: Final = struct.Struct(">BB").pack
_pack_16: Final = struct.Struct(">BH").pack
_pack_32: Final = struct.Struct(">BI").pack
_pack_64: Final = struct.Struct(">BQ").pack


def head(major: int, value: int) -> bytes:
    """A CBOR head with the shortest argument, as cbor2 writes it."""
    if value < 24:
        return _BYTES[major | value]
    if value < 0x100:
        return _pack_8(major | 24, value)
    if value < 0x1_0000:
        return _pack_16(major | 25, value)
    if value < 0x1_0000_0000:
        return _pack_32(major | 26, value)
    return _pack_64(major | 27, value)


def uint(value: object) -> bytes:
    """An int 0 .. 2**64 - 1 (a bool, a bigger or negative int: the codec's job)."""
    if type(value) is not int or not 0 <= value < 0x1_0000_0000_0000_0000:
        raise NotByHand
    return _BYTES[value] if value < 24 else head(0, value)


def text(value: object) -> bytes:
    if type(value) is not str:
        raise NotByHand
    try:
        data = value.encode()
    except UnicodeEncodeError:  # lone surrogates: the codec says why it refuses
        raise NotByHand from None
    return head(0x60, len(data)) + data


def read_uint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned int whose CBOR head starts at ``data[pos]`` (before ``end``),
    and the position after it; ``NotByHand`` for anything else (the codec's job)."""
    if pos >= end:
        raise NotByHand
    first = data[pos]
    if first < 24:
        return first, pos + 1
    width = _WIDTHS.get(first)
    if width is None or pos + 1 + width > end:
        raise NotByHand
    return int.from_bytes(data[pos + 1 : pos + 1 + width]), pos + 1 + width


_WIDTHS: Final = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}


def read_text(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """The text whose CBOR head starts at ``data[pos]`` (before ``end``), and the
    position after it; ``NotByHand`` for anything else, invalid UTF-8 included (the
    codec says why it refuses)."""
    if pos >= end or data[pos] >> 5 != 3:
        raise NotByHand
    first = data[pos] & 0x1F
    if first < 24:
        size, at = first, pos + 1
    else:
        width = _WIDTHS.get(first)
        if width is None or pos + 1 + width > end:
            raise NotByHand
        size, at = int.from_bytes(data[pos + 1 : pos + 1 + width]), pos + 1 + width
    if at + size > end:
        raise NotByHand
    try:
        return data[at : at + size].decode(), at + size
    except UnicodeDecodeError:
        raise NotByHand from None
