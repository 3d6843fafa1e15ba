"""Bounds: what a peer's bytes may cost, and the checks that keep to them.

Decoding is linear in the frame, and so is everything done later with what it gives
-- printing, hashing, comparing, encoding it again to forward it
(docs/protocol.md, "What a peer may send"):

* no shared or string references (tags 28/29, 25/256): a small frame cannot expand;
* an int has at most ``MAX_BIGNUM_BYTES`` bytes (Python prints it by default; a
  bigger one refuses to print, and converting it to text is quadratic);
* a Decimal has at most ``MAX_DECIMAL_DIGITS`` digits and an exponent in
  ``DECIMAL_EXPONENTS`` (``int()`` of ``Decimal("1e999999")`` takes 40 s, and
  ``format(Decimal("1e-999999999"), "f")`` makes a 1 GB string);
* a native map may only have str and bytes keys (cbor2's ``strict_hashable_types``:
  their hashes are randomized); a dict with other keys, a set and a frozenset are
  built by our own decoders, which refuse more than ``MAX_SAME_HASH`` keys or items
  with one hash value: ints, floats, Decimals and tuples have predictable hashes,
  and 16,000 int keys with one hash took 3 s to insert (the time is quadratic);
* nesting is bounded by the codec's ``max_depth`` on both sides.

The sending side checks the same bounds, so that what we send a peer accepts.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Any, Final

import cbor2

from ..errors import DecodeError
from .tags import CBOR2_TAGS_KEPT, CBOR2_TAGS_REFUSED, TAG_NEGATIVE_BIGNUM, TAG_POSITIVE_BIGNUM

__all__ = [
    "DECIMAL_EXPONENTS",
    "DEFAULT_MAX_DEPTH",
    "LEAF_DEPTH_SLACK",
    "MAX_BIGNUM_BYTES",
    "MAX_DATETIME_TEXT",
    "MAX_DECIMAL_DIGITS",
    "MAX_DECIMAL_TEXT",
    "MAX_DEPTH_LIMIT",
    "MAX_SAME_HASH",
    "check_bignums",
    "check_decimal",
    "check_hashes",
]

#: Bytes of magnitude of a bignum (tags 2/3): |n| < 2**8192, at most 2467 digits,
#: which Python prints with its default int_max_str_digits (4300).
MAX_BIGNUM_BYTES: Final = 1024
#: Digits of a Decimal's coefficient (or of a NaN's payload).
MAX_DECIMAL_DIGITS: Final = 1024
#: Exponents a finite Decimal may have: ``int()`` of one then has at most 4024
#: digits (printable), and its fixed-point text at most about a million characters.
DECIMAL_EXPONENTS: Final = range(-999_999, 3_001)
# str() of the longest accepted Decimal, with room for sign, point and exponent.
MAX_DECIMAL_TEXT: Final = MAX_DECIMAL_DIGITS + 16
#: Keys of one dict (or items of one set) that may share a hash value.  Python's
#: hashes of ints, floats, Decimals and tuples are predictable, and inserting n keys
#: with one hash costs n**2/2 comparisons; legitimate data almost never has two.
MAX_SAME_HASH: Final = 16
# ISO text of a datetime is at most 26 characters ("2020-01-02T03:04:05.123456").
MAX_DATETIME_TEXT: Final = 64

DEFAULT_MAX_DEPTH: Final = 256
# The scan recurses in Python once per level, and cbor2's native encoder recurses on the
# C stack (it overflows somewhere past 5000 levels): keep well below both.
MAX_DEPTH_LIMIT: Final = 900
# CBOR levels a leaf value may add below what the scan counts (a Location inside a
# PeerStatus is tag + array + tag + array), so that whatever we encode, a peer with the
# same max_depth decodes.
LEAF_DEPTH_SLACK: Final = 8


def check_decimal(value: Decimal) -> str | None:
    """Why ``value`` is not a Decimal that travels (see ``MAX_DECIMAL_DIGITS`` and
    ``DECIMAL_EXPONENTS``), or None if it is one."""
    _, digits, exponent = value.as_tuple()
    if len(digits) > MAX_DECIMAL_DIGITS:
        return f"a Decimal of {len(digits)} digits, over {MAX_DECIMAL_DIGITS}"
    if type(exponent) is int and exponent not in DECIMAL_EXPONENTS:
        return (
            f"a Decimal with exponent {exponent}, outside "
            f"{DECIMAL_EXPONENTS.start}..{DECIMAL_EXPONENTS.stop - 1}"
        )
    return None


def check_hashes(items: Collection[object], what: str) -> None:
    """Refuse more than ``MAX_SAME_HASH`` items with one hash (see the module
    docstring); ``hash`` itself refuses unhashable items."""
    if len(items) <= MAX_SAME_HASH:
        return
    try:
        counts = collections.Counter(map(hash, items))
    except TypeError:
        raise DecodeError(f"{what} holds an unhashable item") from None
    if max(counts.values()) > MAX_SAME_HASH:
        raise DecodeError(f"{what} has more than {MAX_SAME_HASH} items with one hash value")


# -- the sender's bignum check --------------------------------------------------------


class _BigInt(Exception):
    pass


def _probe_bignum(value: object, immutable: bool) -> None:
    if type(value) is bytes and len(value) > MAX_BIGNUM_BYTES:
        raise _BigInt


def _ignore_tag(value: object, immutable: bool) -> None:
    return None


_BIGNUM_PROBE: Final[dict[int, Callable[[Any, bool], object]]] = {
    number: _ignore_tag for number in CBOR2_TAGS_REFUSED | CBOR2_TAGS_KEPT
}
_BIGNUM_PROBE[TAG_POSITIVE_BIGNUM] = _BIGNUM_PROBE[TAG_NEGATIVE_BIGNUM] = _probe_bignum


def check_bignums(payload: bytes) -> None:
    """``ValueError`` if an encoded message holds an int a peer would refuse."""
    try:
        cbor2.loads(
            payload,
            tag_hook=lambda tag, immutable: None,
            semantic_decoders=_BIGNUM_PROBE,
            max_depth=MAX_DEPTH_LIMIT + LEAF_DEPTH_SLACK,
        )
    except cbor2.CBORDecodeError as exc:
        if isinstance(exc.__cause__, _BigInt):
            raise ValueError(
                f"cannot encode an int of more than {MAX_BIGNUM_BYTES * 8} bits: "
                "a peer would refuse it"
            ) from None
        raise AssertionError("the bignum check could not read an encoded message") from exc
