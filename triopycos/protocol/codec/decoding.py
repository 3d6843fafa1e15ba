"""Decoding: a peer's bytes to a message, accepting exactly the tag table
(``tags.py``) within the bounds (``bounds.py``); anything else is a ``DecodeError``.

cbor2 does the parsing; each tag's payload is checked field by field by its decoder
here.  CBOR ``undefined`` and simple values (which triopycos never sends) come back as
``cbor2.undefined`` and ``cbor2.CBORSimpleValue`` and can be sent on as they are, so
that whatever decodes can be forwarded.  Nothing a peer sent reaches an error
message unescaped (``printable.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, NoReturn

import cbor2

from ...values.errors import RemoteError
from ...values.location import Location
from ...values.status import MonitorStatus, PeerStatus
from ..errors import DecodeError
from ..printable import describe, escape
from .bounds import (
    LEAF_DEPTH_SLACK,
    MAX_BIGNUM_BYTES,
    MAX_DATETIME_TEXT,
    MAX_DECIMAL_TEXT,
    check_decimal,
    check_hashes,
)
from .ref import Ref
from .registry import TypeRegistry
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
    TAG_NEGATIVE_BIGNUM,
    TAG_PEER_STATUS,
    TAG_POSITIVE_BIGNUM,
    TAG_REF,
    TAG_REGISTERED,
    TAG_SET,
    TAG_TUPLE,
)

__all__ = ["DecodeInto", "Decoder", "loads_plain"]

_TagDecoder = Callable[[Any, bool], object]
#: ``Decoder.decode_into``'s type.
DecodeInto = Callable[[list[bytes], int, list[object]], "tuple[int, DecodeError] | None"]
_DAY_US: Final = 86_400_000_000
_loads = cbor2.loads


def _decode_error(exc: Exception) -> DecodeError:
    """The ``DecodeError`` of what decoding a peer's bytes raised."""
    if isinstance(exc, cbor2.CBORDecodeError):
        cause = exc.__cause__
        if isinstance(cause, DecodeError):
            # Our decoders' own words: they never quote a peer's value unescaped.
            return DecodeError(str(cause))
        detail = error_text(exc)
        if cause is not None:
            detail += f" ({error_text(cause)})"
        return DecodeError(f"undecodable message: {detail}")
    return DecodeError(f"undecodable message: {error_text(exc)}")


class Decoder:
    """The decoding half of a ``Codec``: ``decode(data) -> message``."""

    __slots__ = ("_decoders", "_depth", "_resolve_ref", "_types")

    def __init__(
        self, types: TypeRegistry, max_depth: int, resolve_ref: Callable[[Ref], object] | None
    ) -> None:
        self._types = types
        self._resolve_ref = resolve_ref
        self._depth = max_depth + LEAF_DEPTH_SLACK
        decoders: dict[int, _TagDecoder] = {
            number: _refuse_tag(number) for number in CBOR2_TAGS_REFUSED
        }
        decoders.update(_STATIC_DECODERS)
        decoders.update(
            {
                TAG_REF: self._decode_ref,
                TAG_EXCEPTION: self._decode_exception,
                TAG_CLASS: self._decode_class,
                TAG_REGISTERED: self._decode_registered,
            }
        )
        self._decoders = decoders

    def decode(self, data: bytes) -> object:
        """Decode one message; anything wrong with ``data`` raises ``DecodeError``."""
        try:
            return _loads(
                data,
                tag_hook=_unknown_tag,
                semantic_decoders=self._decoders,
                max_depth=self._depth,
                allow_indefinite=False,
                allow_duplicate_keys=False,
                # Native maps: str and bytes keys only (randomized hashes); other
                # keys come in TAG_MAP, whose decoder bounds hash collisions.
                strict_hashable_types=True,
            )
        except Exception as exc:  # cbor2 wraps everything, but never let anything else out
            raise _decode_error(exc) from exc

    def decode_into(
        self, chunks: list[bytes], start: int, values: list[object]
    ) -> tuple[int, DecodeError] | None:
        """``decode`` of ``chunks[start:]`` in order, each appended to ``values``, up
        to the first that fails: None if none did, else its index and its error.
        One call for a run of messages (``PeerSession.events(runs=True)``): a Python
        call less per message than ``decode`` each."""
        append = values.append
        decoders = self._decoders
        depth = self._depth
        for index in range(start, len(chunks)):
            try:
                append(
                    _loads(  # (decode's options, exactly)
                        chunks[index],
                        tag_hook=_unknown_tag,
                        semantic_decoders=decoders,
                        max_depth=depth,
                        allow_indefinite=False,
                        allow_duplicate_keys=False,
                        strict_hashable_types=True,
                    )
                )
            except Exception as exc:
                error = _decode_error(exc)
                error.__cause__ = exc
                return index, error
        return None

    def _decode_ref(self, value: object, immutable: bool) -> object:
        kind, node_id, ident, name, addr, port = _array(value, 6, "Ref")
        if (
            type(kind) is not str
            or type(node_id) is not bytes
            or (type(ident) is not int and type(ident) is not str)
            # Task ids count from 1; the bound also keeps a peer from choosing ids
            # whose hashes collide (they become dict keys of the receiving node).
            or (type(ident) is int and not 0 < ident < 2**63)
            or type(name) is not str
            or type(addr) is not str
            or type(port) is not int
        ):
            raise DecodeError("Ref payload has the wrong types")
        ref = Ref(kind, node_id, ident, name, Location(addr, port))
        resolve = self._resolve_ref
        return ref if resolve is None else resolve(ref)

    def _decode_exception(self, value: object, immutable: bool) -> BaseException:
        name, args, text = _array(value, 3, "exception")
        name = _text(name, "exception type name")
        text = _text(text, "exception traceback")
        if not isinstance(args, (list, tuple)):
            raise DecodeError("exception args must be an array")
        args = tuple(args)
        cls = self._types.exception_class(name)
        exc = _rebuild_exception(cls, args) if cls is not None else None
        if exc is None:
            exc = RemoteError(name, args, text)
        exc.remote_traceback = text  # type: ignore[attr-defined]
        return exc

    def _decode_class(self, value: object, immutable: bool) -> type:
        name = _text(value, "class name")
        registration = self._types.by_name.get(name)
        if registration is not None:
            return registration.cls
        return self._types.exception_class(name) or RemoteError

    def _decode_registered(self, value: object, immutable: bool) -> object:
        name, payload = _array(value, 2, "registered type")
        name = _text(name, "registered type name")
        registration = self._types.by_name.get(name)
        if registration is None:
            raise DecodeError(f"type {describe(name)} is not registered here (see register_type)")
        if registration.decode is None:
            raise DecodeError(f"type {describe(name)} is registered here as an exception")
        return registration.decode(payload)


def _rebuild_exception(cls: type[BaseException], args: tuple[object, ...]) -> BaseException | None:
    try:
        return cls(*args)
    except Exception:
        pass
    # Constructors that take other arguments than they store in .args (ServiceError,
    # FrameTooLarge...): skip __init__, keep the args.
    try:
        exc = cls.__new__(cls, *args)
        exc.args = args
    except Exception:
        return None
    return exc


def error_text(exc: BaseException) -> str:
    """A bounded, escaped account of an error raised while decoding a peer's bytes
    (its text may quote them)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    name = type(exc).__name__
    return f"{name}: {escape(text)}" if text else name


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> NoReturn:
    raise DecodeError(f"unknown CBOR tag {tag.tag}")


def _refuse_tag(number: int) -> Callable[[object, bool], NoReturn]:
    def refuse(value: object, immutable: bool) -> NoReturn:
        raise DecodeError(f"CBOR tag {number} is not accepted")

    return refuse


def _array(value: object, length: int, what: str) -> list[Any] | tuple[Any, ...]:
    # Inside a map key cbor2 hands arrays over as tuples.
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise DecodeError(f"{what} payload must be an array of {length} items")
    return value


def _text(value: object, what: str) -> str:
    if type(value) is not str:
        raise DecodeError(f"{what} must be a text string")
    return value


# -- decoders of the tags every codec decodes the same way -------------------------------


def _bignum_magnitude(value: object) -> int:
    if type(value) is not bytes:
        raise DecodeError("bignum payload must be a byte string")
    if len(value) > MAX_BIGNUM_BYTES:
        raise DecodeError(f"bignum of {len(value)} bytes, over {MAX_BIGNUM_BYTES}")
    return int.from_bytes(value, "big")


def _decode_positive_bignum(value: object, immutable: bool) -> int:
    return _bignum_magnitude(value)


def _decode_negative_bignum(value: object, immutable: bool) -> int:
    return -1 - _bignum_magnitude(value)


def _decode_set(value: object, immutable: bool) -> set[object] | frozenset[object]:
    if not isinstance(value, (list, tuple)):
        raise DecodeError("set payload must be an array")
    check_hashes(value, "set")
    try:
        items = frozenset(value) if immutable else set(value)
    except TypeError:
        raise DecodeError("set holds an unhashable item") from None
    return items


def _decode_map(value: object, immutable: bool) -> dict[object, object]:
    if immutable:
        raise DecodeError("a map cannot be a map key or a set item")
    if type(value) is not list or len(value) % 2:
        raise DecodeError("map payload must be an array of keys and values")
    keys = value[0::2]
    check_hashes(keys, "map")
    try:
        result = dict(zip(keys, value[1::2], strict=True))
    except TypeError:
        raise DecodeError("map has an unhashable key") from None
    if len(result) != len(keys):
        raise DecodeError("map has a duplicate key")
    return result


def _decode_tuple(value: object, immutable: bool) -> tuple[object, ...]:
    if type(value) is tuple:
        return value
    if type(value) is list:
        return tuple(value)
    raise DecodeError("tuple payload must be an array")


def _decode_frozenset(value: object, immutable: bool) -> frozenset[object]:
    if not isinstance(value, (list, tuple)):
        raise DecodeError("frozenset payload must be an array")
    check_hashes(value, "frozenset")
    try:
        return frozenset(value)
    except TypeError:
        raise DecodeError("frozenset holds an unhashable item") from None


def _iso_datetime(text: object) -> datetime:
    text = _text(text, "datetime text")
    if len(text) > MAX_DATETIME_TEXT:
        raise DecodeError(f"datetime text of {len(text)} characters")
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"not an ISO datetime: {describe(text)}") from None
    if local.tzinfo is not None:
        raise DecodeError("a datetime's text must not carry an offset")
    return local


def _decode_datetime(value: object, immutable: bool) -> datetime:
    if type(value) is str:
        return _iso_datetime(value)
    text, offset = _array(value, 2, "aware datetime")
    local = _iso_datetime(text)
    if type(offset) is not int or not -_DAY_US < offset < _DAY_US:
        raise DecodeError("aware datetime offset must be an int of microseconds under a day")
    return local.replace(tzinfo=timezone(timedelta(microseconds=offset)))


def _decode_decimal(value: object, immutable: bool) -> Decimal:
    text = _text(value, "Decimal payload")
    if len(text) > MAX_DECIMAL_TEXT:
        raise DecodeError(f"Decimal text of {len(text)} characters")
    try:
        # The constructor is exact and ignores the context's limits, but flags a
        # malformed string through the current context, which may trap it.
        result = Decimal(text)
    except ArithmeticError:
        raise DecodeError(f"not a Decimal: {describe(text)}") from None
    problem = check_decimal(result)
    if problem is not None:
        raise DecodeError(problem)
    return result


def _decode_location(value: object, immutable: bool) -> Location:
    addr, port = _array(value, 2, "Location")
    if type(port) is not int:
        raise DecodeError("Location port must be an int")
    return Location(_text(addr, "Location address"), port)


def _decode_monitor_status(value: object, immutable: bool) -> MonitorStatus:
    info, kind, result = _array(value, 3, "MonitorStatus")
    return MonitorStatus(info, kind, result)


def _decode_peer_status(value: object, immutable: bool) -> PeerStatus:
    location, name, status = _array(value, 3, "PeerStatus")
    if type(location) is not Location or type(status) is not int:
        raise DecodeError("PeerStatus payload has the wrong types")
    return PeerStatus(location, _text(name, "PeerStatus name"), status)


# Plus, per codec, the tags whose decoding depends on its registry or its resolve_ref.
_STATIC_DECODERS: Final[dict[int, _TagDecoder]] = {
    TAG_POSITIVE_BIGNUM: _decode_positive_bignum,
    TAG_NEGATIVE_BIGNUM: _decode_negative_bignum,
    TAG_SET: _decode_set,
    TAG_MAP: _decode_map,
    TAG_TUPLE: _decode_tuple,
    TAG_FROZENSET: _decode_frozenset,
    TAG_DATETIME: _decode_datetime,
    TAG_DECIMAL: _decode_decimal,
    TAG_LOCATION: _decode_location,
    TAG_MONITOR_STATUS: _decode_monitor_status,
    TAG_PEER_STATUS: _decode_peer_status,
}


# -- plain CBOR, for small fixed grammars -------------------------------------------------


def _refuse_any_tag(tag: cbor2.CBORTag, immutable: bool) -> NoReturn:
    raise DecodeError(f"CBOR tag {tag.tag} is not accepted here")


_NO_TAGS: Final[dict[int, _TagDecoder]] = {
    number: _refuse_tag(number) for number in CBOR2_TAGS_REFUSED | CBOR2_TAGS_KEPT
}


def loads_plain(data: bytes, *, max_depth: int) -> object:
    """Decode ``data`` as plain CBOR: no tag at all (not even a bignum), map keys
    only str or bytes, no indefinite lengths, no duplicate keys, at most
    ``max_depth`` levels.  For small fixed grammars (discovery datagrams) that are
    type-checked field by field after this.  Raises only ``DecodeError``."""
    try:
        return _loads(
            data,
            tag_hook=_refuse_any_tag,
            semantic_decoders=_NO_TAGS,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, DecodeError):
            raise DecodeError(str(cause)) from exc
        raise DecodeError(f"undecodable: {error_text(exc)}") from exc
    except Exception as exc:
        raise DecodeError(f"undecodable: {error_text(exc)}") from exc
