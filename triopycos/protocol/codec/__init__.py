"""The message codec: CBOR (cbor2) plus triopycos's own semantic tags. No pickle.

A ``Codec`` is an ``Encoder`` and a ``Decoder`` sharing a ``TypeRegistry`` and a
nesting bound.  Each file holds one part:

* ``tags.py``: the tag table, which value travels how (the wire format);
* ``bounds.py``: what a peer's bytes may cost, and the checks on both sides;
* ``registry.py``: registered types, per codec (a node), under the process's
  ``default_types`` that ``register_type`` adds to;
* ``ref.py``: ``Ref``, what travels for a task, channel or RPS;
* ``scan.py``: the pass that validates a message and picks the fast encoder;
* ``encoding.py`` and ``decoding.py``: the two directions (and ``loads_plain`` for
  small fixed grammars).

The value types themselves (``Location``, ``MonitorStatus``, ``PeerStatus``, the
library's errors) live in ``triopycos.values``, below this layer.  Tasks, channels
and RPSs are the API's: they travel as a ``Ref`` given by their ``_triopycos_ref_()``
method, and a node's codec turns a decoded ``Ref`` back into one with the
``resolve_ref`` the node gives it.

Speed: a message made only of None/bool/int/float/str/bytes/date/UUID in lists, dicts
and sets (the usual case) goes through cbor2's native encoder and decoder with no
Python hooks at all, after one Python pass over it (the scan).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .bounds import (
    DECIMAL_EXPONENTS,
    DEFAULT_MAX_DEPTH,
    MAX_BIGNUM_BYTES,
    MAX_DECIMAL_DIGITS,
    MAX_DEPTH_LIMIT,
    MAX_SAME_HASH,
    check_decimal,
)
from .decoding import DecodeInto, Decoder, loads_plain
from .encoding import Encoder
from .ref import Ref
from .registry import TypeRegistry, default_types, register_type
from .tags import (
    CBOR2_TAGS_KEPT,
    CBOR2_TAGS_REFUSED,
    TAG_CLASS,
    TAG_DATETIME,
    TAG_DECIMAL,
    TAG_EXCEPTION,
    TAG_FROZENSET,
    TAG_LOCATION,
    TAG_MAP,
    TAG_MONITOR_STATUS,
    TAG_PEER_STATUS,
    TAG_REF,
    TAG_REGISTERED,
    TAG_TUPLE,
)

__all__ = [
    "CBOR2_TAGS_KEPT",
    "CBOR2_TAGS_REFUSED",
    "DECIMAL_EXPONENTS",
    "DEFAULT_MAX_DEPTH",
    "MAX_BIGNUM_BYTES",
    "MAX_DECIMAL_DIGITS",
    "MAX_DEPTH_LIMIT",
    "MAX_SAME_HASH",
    "TAG_CLASS",
    "TAG_DATETIME",
    "TAG_DECIMAL",
    "TAG_EXCEPTION",
    "TAG_FROZENSET",
    "TAG_LOCATION",
    "TAG_MAP",
    "TAG_MONITOR_STATUS",
    "TAG_PEER_STATUS",
    "TAG_REF",
    "TAG_REGISTERED",
    "TAG_TUPLE",
    "Codec",
    "Ref",
    "TypeRegistry",
    "check_decimal",
    "decode",
    "default_types",
    "encode",
    "loads_plain",
    "register_type",
]


class Codec:
    """Encodes messages to bytes and back.

    ``encode(obj) -> bytes`` raises ``TypeError`` (naming the type) for a value it
    cannot send, and ``ValueError`` for a value it cannot send as it is (too deep, a
    reference cycle, a str with lone surrogates, an int or Decimal a peer would
    refuse).  ``decode(data)`` raises only ``DecodeError``.

    ``resolve_ref``, if given, is called with every ``Ref`` decoded and its result
    replaces the ``Ref`` (that is how a node turns references back into its ``Task``
    and ``Channel`` objects). It should not raise: if it does, ``decode`` raises
    ``DecodeError``.

    ``max_depth`` bounds nesting (each list, dict, tuple, set... is one or two CBOR
    levels): deeper messages fail to encode with ``ValueError`` and fail to decode
    with ``DecodeError``.

    ``types`` holds the types it sends and rebuilds by name (``register_type``);
    default: the process's, ``default_types``.  A node gives its codec one of its own,
    ``TypeRegistry(default_types)``, so that what it registers stays its own.
    """

    __slots__ = ("_max_depth", "_types", "decode", "decode_into", "encode")

    def __init__(
        self,
        resolve_ref: Callable[[Ref], object] | None = None,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        types: TypeRegistry | None = None,
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int):
            raise TypeError("max_depth must be an int")
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be in 1..{MAX_DEPTH_LIMIT}")
        if types is not None and not isinstance(types, TypeRegistry):
            raise TypeError(f"types must be a TypeRegistry, not {type(types).__name__}")
        self._max_depth = max_depth
        self._types = default_types if types is None else types
        # The halves' bound methods themselves, not wrappers: one Python call less
        # per message on the hot path.
        self.encode: Callable[[object], bytes] = Encoder(self._types, max_depth).encode
        decoder = Decoder(self._types, max_depth, resolve_ref)
        self.decode: Callable[[bytes], object] = decoder.decode
        #: ``decode_into(chunks, start, values)``: ``Decoder.decode_into``.
        self.decode_into: DecodeInto = decoder.decode_into

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def types(self) -> TypeRegistry:
        """The registry of the types this codec sends and rebuilds by name."""
        return self._types


_default_codec = Codec()
#: Encode and decode with the process's registry and no reference resolution.
encode: Final = _default_codec.encode
decode: Final = _default_codec.decode
