"""The tag table: which CBOR tag carries which value, and which tags are refused.

======================  ==============  ==============================================
value                   CBOR            notes
======================  ==============  ==============================================
None, bool, int,        native          ints beyond 64 bits use bignum tags 2/3, at
float, str, bytes                       most MAX_BIGNUM_BYTES bytes of magnitude
list                    native
dict                    native map      when every key is a str or bytes
dict                    0x74700005      any other keys: [key, value, key, value...]
set                     tag 258         RFC 8949 / cbor2's set tag
date                    tag 1004        RFC 8943 full-date
UUID                    tag 37
tuple                   0x74700001      [items...]
frozenset               0x74700002      [items...]
datetime                0x74700003      naive: isoformat() text; aware: [naive text,
                                        UTC offset in microseconds]
Decimal                 0x74700004      str() text: keeps NaN/sNaN/-0/exponent exactly;
                                        at most MAX_DECIMAL_DIGITS digits, exponent
                                        in DECIMAL_EXPONENTS
Location                0x74700010      [addr, port]
Ref (and any object     0x74700011      [kind, node_id, ident, name, addr, port]
with _triopycos_ref_)
MonitorStatus           0x74700012      [info, type, value]
PeerStatus              0x74700013      [location, name, status]
exception instance      0x74700020      [type name, [args...], traceback text]
exception class, or     0x74700021      type name
registered class
registered type         0x74700030      [registered name, payload]
======================  ==============  ==============================================

The 0x7470xxxx tags ("tp") are private to triopycos, picked from the first-come
first-served part of the IANA registry; only triopycos nodes need to understand them.
The numbers and payloads are the wire format: changing one is a protocol change
(``tests/test_codec.py`` and ``tests/test_type_registry.py`` pin them).  Decoding
accepts exactly the tags above: any other tag, including the ones cbor2 would
otherwise turn into objects (regexes, MIME messages, shared references...), is a
``DecodeError``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CBOR2_TAGS_KEPT",
    "CBOR2_TAGS_REFUSED",
    "TAG_CLASS",
    "TAG_DATETIME",
    "TAG_DECIMAL",
    "TAG_EXCEPTION",
    "TAG_FROZENSET",
    "TAG_LOCATION",
    "TAG_MAP",
    "TAG_MONITOR_STATUS",
    "TAG_NEGATIVE_BIGNUM",
    "TAG_PEER_STATUS",
    "TAG_POSITIVE_BIGNUM",
    "TAG_REF",
    "TAG_REGISTERED",
    "TAG_SET",
    "TAG_TUPLE",
]

_TAG_BASE: Final = 0x7470_0000
TAG_TUPLE: Final = _TAG_BASE + 0x01
TAG_FROZENSET: Final = _TAG_BASE + 0x02
TAG_DATETIME: Final = _TAG_BASE + 0x03
TAG_DECIMAL: Final = _TAG_BASE + 0x04
TAG_MAP: Final = _TAG_BASE + 0x05
TAG_LOCATION: Final = _TAG_BASE + 0x10
TAG_REF: Final = _TAG_BASE + 0x11
TAG_MONITOR_STATUS: Final = _TAG_BASE + 0x12
TAG_PEER_STATUS: Final = _TAG_BASE + 0x13
TAG_EXCEPTION: Final = _TAG_BASE + 0x20
TAG_CLASS: Final = _TAG_BASE + 0x21
TAG_REGISTERED: Final = _TAG_BASE + 0x30

# Tags cbor2 6.x decodes by itself (found by probing every tag up to 70000; a test
# re-probes so that a cbor2 upgrade adding one is noticed). Of these we keep only
# bignums (2, 3), UUID (37), set (258) and full-date (1004); the rest are refused.
CBOR2_TAGS_REFUSED: Final = frozenset(
    {0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 52, 54, 100, 256, 260, 261, 43000, 55799}
)
CBOR2_TAGS_KEPT: Final = frozenset({2, 3, 37, 258, 1004})
TAG_POSITIVE_BIGNUM: Final = 2
TAG_NEGATIVE_BIGNUM: Final = 3
TAG_SET: Final = 258
