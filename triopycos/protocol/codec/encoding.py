"""Encoding: a message to bytes, with cbor2's native encoder when the scan allows,
else with our hooks (one per tagged type, see ``tags.py``).

Exact round trips: a value decodes as the same type with an equal value. Subclasses of
built-in types (``IntEnum`` members, named tuples, ``OrderedDict``...) are refused with
a ``TypeError`` rather than silently sent as their base type: register them.
Exceptions never fail to send: an argument that cannot travel goes as its repr.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import cbor2

from ...values.errors import RemoteError
from ...values.location import Location
from ...values.status import MonitorStatus, PeerStatus
from .bounds import MAX_BIGNUM_BYTES, check_bignums, check_decimal
from .ref import Ref
from .registry import TypeRegistry, qualified_name
from .scan import NATIVE_LEAVES, TooDeep, is_ref_type, make_scan, unsupported_message
from .tags import (
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

__all__ = ["Encoder"]

_Hook = Callable[[cbor2.CBOREncoder, Any], None]
_MICROSECOND: Final = timedelta(microseconds=1)
_dumps = cbor2.dumps
_NATIVE: Final = NATIVE_LEAVES
# ids of the exceptions being encoded in this context, to cut cycles through args.
_exceptions_in_progress: ContextVar[frozenset[int]] = ContextVar(
    "_exceptions_in_progress", default=frozenset()
)


class Encoder:
    """The encoding half of a ``Codec``: ``encode(obj) -> bytes``."""

    __slots__ = ("_encoders", "_encoders_version", "_max_depth", "_scan", "_types")

    def __init__(self, types: TypeRegistry, max_depth: int) -> None:
        self._types = types
        self._max_depth = max_depth
        self._scan = make_scan(types)
        self._encoders: dict[type, _Hook] = {}
        self._encoders_version = -1

    def encode(self, obj: object) -> bytes:
        """Encode one message."""
        # Not self._scan(...): a function in a slot called as a method is not
        # specialized by the interpreter, and costs 4% of a small message.
        scan = self._scan
        try:
            if type(obj) in _NATIVE:
                payload = _dumps(obj)  # (what scan would say: a native leaf needs no hook)
            elif scan(obj, self._max_depth):
                payload = self._encode_hooked(obj)
            else:
                payload = _dumps(obj)
        except (TooDeep, RecursionError):
            raise ValueError(
                f"cannot encode: nested deeper than max_depth={self._max_depth}, "
                "or holds a reference cycle"
            ) from None
        except cbor2.CBOREncodeTypeError as exc:
            raise TypeError(f"cannot encode: {exc}") from exc
        except cbor2.CBOREncodeError as exc:
            raise ValueError(f"cannot encode: {exc}") from exc
        # An int too big for a peer to accept can only be in a payload longer than
        # that, with a bignum tag's byte somewhere: rare, and then checked by a
        # decoding pass that only looks at bignums.
        if len(payload) > MAX_BIGNUM_BYTES and (b"\xc2" in payload or b"\xc3" in payload):
            check_bignums(payload)
        return payload

    def _encode_hooked(self, obj: object) -> bytes:
        types = self._types
        if self._encoders_version != types.version:
            # Read before listing: a registration in between makes the table newer
            # than its version, and only costs a rebuild next time.
            version = types.version
            encoders: dict[type, _Hook] = dict(_STATIC_HOOKS)
            encoders[type] = self._encode_class
            for registration in types.registrations():
                encoders[registration.cls] = (
                    self._encode_exception
                    if registration.encode is None
                    else self._encode_registered
                )
            self._encoders = encoders
            self._encoders_version = version
        return _dumps(obj, encoders=self._encoders, default=self._default)

    def _default(self, encoder: cbor2.CBOREncoder, obj: object) -> None:
        # Reached for types without an exact entry in the encoders table.
        if isinstance(obj, BaseException):
            self._encode_exception(encoder, obj)
        elif isinstance(obj, type):
            self._encode_class(encoder, obj)
        elif is_ref_type(type(obj)):
            _encode_ref_object(encoder, obj)
        else:
            raise TypeError(unsupported_message(obj))

    def _encode_class(self, encoder: cbor2.CBOREncoder, cls: type) -> None:
        encoder.encode_semantic(TAG_CLASS, self._types.class_name(cls))

    def _encode_exception(self, encoder: cbor2.CBOREncoder, exc: BaseException) -> None:
        in_progress = _exceptions_in_progress.get()
        if id(exc) in in_progress:
            # An exception inside its own args: send the inner one as its repr.
            encoder.encode_string(_clean_text(_safe_repr(exc)))
            return
        if type(exc) is RemoteError:
            # Forwarding an exception we could not rebuild: send the original again.
            name, args, text = exc.type_name, exc.remote_args, exc.traceback
        else:
            registration = self._types.by_type.get(type(exc))
            name = registration.name if registration else qualified_name(type(exc))
            args, text = exc.args, _traceback_text(exc)
        token = _exceptions_in_progress.set(in_progress | {id(exc)})
        try:
            encoded_args = [self._encode_arg(arg) for arg in args]
        finally:
            _exceptions_in_progress.reset(token)
        # Each arg was encoded once, to learn whether it can travel; write those bytes
        # as they are rather than encode again (which nested exceptions would make
        # exponential).
        encoder.encode_length(6, TAG_EXCEPTION)
        encoder.encode_length(4, 3)
        encoder.encode_string(_clean_text(name))
        encoder.encode_length(4, len(encoded_args))
        for encoded in encoded_args:
            encoder.write(encoded)
        encoder.encode_string(_clean_text(text))

    def _encode_arg(self, arg: object) -> bytes:
        # Sending an exception must never fail: what cannot travel goes as its repr.
        try:
            return self.encode(arg)
        except Exception:
            return _dumps(_clean_text(_safe_repr(arg)))

    def _encode_registered(self, encoder: cbor2.CBOREncoder, obj: object) -> None:
        registration = self._types.by_type[type(obj)]
        assert registration.encode is not None
        payload = registration.encode(obj)
        # The scan did not see the payload: check it here, with a depth budget of its own.
        try:
            self._scan(payload, self._max_depth)
        except TooDeep:
            raise ValueError(
                f"cannot encode {registration.name}: its payload is nested too deeply"
            ) from None
        encoder.encode_semantic(TAG_REGISTERED, [registration.name, payload])


# -- exceptions' text -----------------------------------------------------------------


def _traceback_text(exc: BaseException) -> str:
    if exc.__traceback__ is not None:
        try:
            return "".join(traceback.format_exception(exc))
        except Exception:  # a broken __str__ must not make sending fail
            return ""
    remote = getattr(exc, "remote_traceback", None)
    return remote if isinstance(remote, str) else ""


def _clean_text(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8; escape them instead of failing.
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _safe_repr(obj: object) -> str:
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__qualname__} object>"


# -- hooks of the types every codec encodes the same way ---------------------------------


def _encode_tuple(encoder: cbor2.CBOREncoder, value: tuple[object, ...]) -> None:
    encoder.encode_semantic(TAG_TUPLE, list(value))


def _encode_frozenset(encoder: cbor2.CBOREncoder, value: frozenset[object]) -> None:
    encoder.encode_semantic(TAG_FROZENSET, list(value))


def _encode_datetime(encoder: cbor2.CBOREncoder, value: datetime) -> None:
    offset = value.utcoffset()
    if offset is None:
        encoder.encode_semantic(TAG_DATETIME, value.isoformat())
    else:
        # The offset travels apart, in microseconds: Python 3.11's fromisoformat()
        # drops sub-second offsets.
        local = value.replace(tzinfo=None).isoformat()
        encoder.encode_semantic(TAG_DATETIME, [local, offset // _MICROSECOND])


def _encode_decimal(encoder: cbor2.CBOREncoder, value: Decimal) -> None:
    problem = check_decimal(value)
    if problem is not None:
        raise ValueError(f"cannot encode {problem}: a peer would refuse it")
    encoder.encode_semantic(TAG_DECIMAL, str(value))


def _encode_dict(encoder: cbor2.CBOREncoder, value: dict[Any, Any]) -> None:
    # Only in messages that need hooks (the scan sends the rest straight to cbor2):
    # encode_map would encode the values without our hooks.
    for key in value:
        if type(key) is not str and type(key) is not bytes:
            flat: list[object] = []
            for item in value.items():
                flat.extend(item)
            encoder.encode_semantic(TAG_MAP, flat)
            return
    encoder.encode_length(5, len(value))
    encode = encoder.encode
    for key, item in value.items():
        encode(key)
        encode(item)


def _encode_location(encoder: cbor2.CBOREncoder, value: Location) -> None:
    encoder.encode_semantic(TAG_LOCATION, [value.addr, value.port])


def _encode_ref(encoder: cbor2.CBOREncoder, ref: Ref) -> None:
    ident = ref.ident
    if (
        type(ref.kind) is not str
        or type(ref.node_id) is not bytes
        or (type(ident) is not int and type(ident) is not str)
        or type(ref.name) is not str
        or type(ref.location) is not Location
    ):
        raise TypeError(f"cannot encode {ref!r}: a field has the wrong type")
    location = ref.location
    encoder.encode_semantic(
        TAG_REF, [ref.kind, ref.node_id, ident, ref.name, location.addr, location.port]
    )


def _encode_monitor_status(encoder: cbor2.CBOREncoder, value: MonitorStatus) -> None:
    encoder.encode_semantic(TAG_MONITOR_STATUS, [value.info, value.type, value.value])


def _encode_peer_status(encoder: cbor2.CBOREncoder, value: PeerStatus) -> None:
    if type(value.location) is not Location or type(value.name) is not str:
        raise TypeError(f"cannot encode {value!r}: a field has the wrong type")
    encoder.encode_semantic(TAG_PEER_STATUS, [value.location, value.name, int(value.status)])


def _encode_ref_object(encoder: cbor2.CBOREncoder, obj: Any) -> None:
    ref = obj._triopycos_ref_()
    if type(ref) is not Ref:
        raise TypeError(f"{type(obj).__qualname__}._triopycos_ref_() must return a Ref")
    _encode_ref(encoder, ref)


# Plus, per codec, ``type`` (class names depend on its registry) and its registered types.
_STATIC_HOOKS: Final[dict[type, _Hook]] = {
    dict: _encode_dict,
    tuple: _encode_tuple,
    frozenset: _encode_frozenset,
    datetime: _encode_datetime,
    Decimal: _encode_decimal,
    Location: _encode_location,
    Ref: _encode_ref,
    MonitorStatus: _encode_monitor_status,
    PeerStatus: _encode_peer_status,
}
