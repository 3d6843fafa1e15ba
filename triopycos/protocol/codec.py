"""The message codec: CBOR (cbor2) plus triopycos's own semantic tags. No pickle.

What a message may hold, and how each value travels:

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
Decoding accepts exactly the tags above: any other tag, including the ones cbor2
would otherwise turn into objects (regexes, MIME messages, shared references...),
is a ``DecodeError``.

What a peer's bytes may cost (docs/protocol.md, "What a peer may send"): decoding is
linear in the frame, and so is everything done later with what it gives --
printing, hashing, comparing, encoding it again to forward it:

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
* CBOR ``undefined`` and simple values (which triopycos never sends) come back as
  ``cbor2.undefined`` and ``cbor2.CBORSimpleValue`` and can be sent on as they are,
  so that whatever decodes can be forwarded.

Speed: a message made only of None/bool/int/float/str/bytes/date/UUID in lists, dicts
and sets (the usual case) goes through cbor2's native encoder and decoder with no
Python hooks at all. One Python pass over the message (``_scan``) runs first: it
checks every value's exact type, bounds the nesting depth (cbor2's encoder has no
bound and would overflow the C stack), and says whether the slower hooked encoder is
needed. Only messages that hold tuples, frozensets or our own types pay for hooks.

Exact round trips: a value decodes as the same type with an equal value. Subclasses of
built-in types (``IntEnum`` members, named tuples, ``OrderedDict``...) are refused with
a ``TypeError`` rather than silently sent as their base type: register them.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import enum
import functools
import io
import socket
import traceback
import types
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, NoReturn, TypeVar, cast
from uuid import UUID

import cbor2

from .._errors import PycosError, RemoteError, ServiceError
from .._location import Location
from .._status import MonitorStatus, PeerStatus
from .errors import DecodeError, FrameTooLarge, ProtocolError
from .printable import describe, escape

__all__ = [
    "DECIMAL_EXPONENTS",
    "DEFAULT_MAX_DEPTH",
    "MAX_BIGNUM_BYTES",
    "MAX_DECIMAL_DIGITS",
    "MAX_SAME_HASH",
    "Codec",
    "Ref",
    "decode",
    "encode",
    "loads_plain",
    "register_type",
]

T = TypeVar("T")

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
_CBOR2_TAGS_REFUSED: Final = frozenset(
    {0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 52, 54, 100, 256, 260, 261, 43000, 55799}
)
CBOR2_TAGS_KEPT: Final = frozenset({2, 3, 37, 258, 1004})
_TAG_POSITIVE_BIGNUM: Final = 2
_TAG_NEGATIVE_BIGNUM: Final = 3
_TAG_SET: Final = 258

#: Bytes of magnitude of a bignum (tags 2/3): |n| < 2**8192, at most 2467 digits,
#: which Python prints with its default int_max_str_digits (4300).
MAX_BIGNUM_BYTES: Final = 1024
#: Digits of a Decimal's coefficient (or of a NaN's payload).
MAX_DECIMAL_DIGITS: Final = 1024
#: Exponents a finite Decimal may have: ``int()`` of one then has at most 4024
#: digits (printable), and its fixed-point text at most about a million characters.
DECIMAL_EXPONENTS: Final = range(-999_999, 3_001)
# str() of the longest accepted Decimal, with room for sign, point and exponent.
_MAX_DECIMAL_TEXT: Final = MAX_DECIMAL_DIGITS + 16
#: Keys of one dict (or items of one set) that may share a hash value.  Python's
#: hashes of ints, floats, Decimals and tuples are predictable, and inserting n keys
#: with one hash costs n**2/2 comparisons; legitimate data almost never has two.
MAX_SAME_HASH: Final = 16
# ISO text of a datetime is at most 26 characters ("2020-01-02T03:04:05.123456").
_MAX_DATETIME_TEXT: Final = 64

DEFAULT_MAX_DEPTH: Final = 256
# The scan recurses in Python once per level, and cbor2's native encoder recurses on the
# C stack (it overflows somewhere past 5000 levels): keep well below both.
MAX_DEPTH_LIMIT: Final = 900
# CBOR levels a leaf value may add below what the scan counts (a Location inside a
# PeerStatus is tag + array + tag + array), so that whatever we encode, a peer with the
# same max_depth decodes.
_LEAF_DEPTH_SLACK: Final = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """What travels for a task, channel or RPS: which node, which object, where.

    ``node_id`` is the node's random id (a restarted node has a new one, so old
    references to it go stale); ``ident`` is the object's id on that node.
    """

    kind: str
    node_id: bytes
    ident: int | str
    name: str
    location: Location


# -- registered types ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Registration:
    cls: type
    name: str
    # Both None: an exception class sent as an exception (type name, args, traceback).
    encode: Callable[[Any], object] | None
    decode: Callable[[Any], object] | None


_by_name: dict[str, _Registration] = {}
_by_type: dict[type, _Registration] = {}
# Bumped on every registration so codecs know to rebuild their encoder tables.
_registry_version = 0

_NoneType = type(None)
# Built-in and library types the codec encodes itself: registering them would break it.
_RESERVED_TYPES: Final = frozenset(
    {
        _NoneType,
        bool,
        int,
        float,
        str,
        bytes,
        list,
        dict,
        set,
        tuple,
        frozenset,
        date,
        datetime,
        Decimal,
        UUID,
        type,
        Location,
        Ref,
        MonitorStatus,
        PeerStatus,
        RemoteError,
    }
)


def register_type(
    cls: type[T],
    name: str | None = None,
    *,
    encode: Callable[[T], object] | None = None,
    decode: Callable[[Any], T] | None = None,
) -> type[T]:
    """Let instances of ``cls`` travel in messages; returns ``cls`` (usable as a decorator).

    On the wire the type is identified by ``name`` (default: ``module.QualName``), so
    every node must register the class under the same name. ``encode(obj)`` returns an
    encodable payload and ``decode(payload)`` rebuilds the object. Without them:

    * dataclasses travel as a dict of their fields and are rebuilt without calling
      ``__init__`` (like pickle would);
    * enums travel as their member's value, rebuilt with ``cls(value)``;
    * exception classes travel as exceptions (type name, args, traceback) and come
      back as themselves, built with ``cls(*args)``;
    * other classes travel as their ``__dict__``, rebuilt with ``cls.__new__(cls)``.

    Registering a different class under a name already taken, or a class already
    registered under another name, raises ``ValueError``.
    """
    global _registry_version
    if not isinstance(cls, type):
        raise TypeError(f"register_type() needs a class, not {cls!r}")
    if name is None:
        name = _qualified_name(cls)
    elif not isinstance(name, str) or not name:
        raise TypeError("the registered name must be a non-empty str")
    if cls in _RESERVED_TYPES:
        raise ValueError(f"{cls.__qualname__} is encoded by triopycos itself")
    taken = _by_name.get(name)
    if taken is not None and taken.cls is not cls:
        raise ValueError(f"type name {name!r} is already registered for {taken.cls!r}")
    previous = _by_type.get(cls)
    if previous is not None and previous.name != name:
        raise ValueError(f"{cls!r} is already registered as {previous.name!r}")

    as_exception = issubclass(cls, BaseException) and encode is None and decode is None
    enc: Callable[[Any], object] | None = encode
    dec: Callable[[Any], object] | None = decode
    if not as_exception:
        default_enc, default_dec = _default_codec_for(cls)
        enc = enc or default_enc
        dec = dec or default_dec
    registration = _Registration(cls, name, enc, dec)
    _by_name[name] = registration
    _by_type[cls] = registration
    _registry_version += 1
    return cls


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _default_codec_for(cls: type) -> tuple[Callable[[Any], object], Callable[[Any], object]]:
    if dataclasses.is_dataclass(cls):
        return _dataclass_codec(cls)
    if issubclass(cls, enum.Enum):
        enum_cls: Callable[[Any], object] = cls
        return (lambda member: member.value), enum_cls
    return _dict_codec(cls)


def _dataclass_codec(cls: type) -> tuple[Callable[[Any], object], Callable[[Any], object]]:
    names = tuple(field.name for field in dataclasses.fields(cls))
    wanted = frozenset(names)

    def encode_fields(obj: Any) -> object:
        return {name: getattr(obj, name) for name in names}

    def decode_fields(payload: Any) -> object:
        fields = _expect_str_mapping(payload, cls)
        if fields.keys() != wanted:
            got = escape(", ".join(sorted(fields)))
            raise DecodeError(f"{cls.__qualname__} fields ({got}) do not match {sorted(wanted)}")
        obj = cast(Any, cls).__new__(cls)
        for name in names:
            # object.__setattr__ gets past frozen dataclasses, and works with slots.
            object.__setattr__(obj, name, fields[name])
        return obj

    return encode_fields, decode_fields


def _dict_codec(cls: type) -> tuple[Callable[[Any], object], Callable[[Any], object]]:
    def encode_dict(obj: Any) -> object:
        try:
            return dict(vars(obj))
        except TypeError:
            raise TypeError(
                f"cannot encode {cls.__qualname__!r} objects: they have no __dict__; "
                "register the class with encode= and decode="
            ) from None

    def decode_dict(payload: Any) -> object:
        attributes = _expect_str_mapping(payload, cls)
        obj = cast(Any, cls).__new__(cls)
        obj.__dict__.update(attributes)
        return obj

    return encode_dict, decode_dict


def _expect_str_mapping(payload: object, cls: type) -> Mapping[str, object]:
    if not isinstance(payload, Mapping) or not all(type(k) is str for k in payload):
        raise DecodeError(f"{cls.__qualname__} payload must be a map with str keys")
    return payload


# -- the scan: validation, depth bound, and "does this need hooks?" ---------------------

# Exact types cbor2's native encoder and decoder round-trip the way we want.
_NATIVE_LEAVES: Final = frozenset(
    {
        str,
        int,
        float,
        bool,
        _NoneType,
        bytes,
        date,
        UUID,
        # Never made by triopycos, but a peer's CBOR may hold them: whatever decodes
        # can be sent on.
        type(cbor2.undefined),
        cbor2.CBORSimpleValue,
    }
)
# Exact types that our hooks encode from fields we trust (checked in the hook).
_TAGGED_LEAVES: Final = frozenset({datetime, Decimal, Location, Ref, PeerStatus})
# ids of the exceptions being encoded in this context, to cut cycles through args.
_exceptions_in_progress: ContextVar[frozenset[int]] = ContextVar(
    "_exceptions_in_progress", default=frozenset()
)
# Types with a method giving their Ref (Task, Channel, RPS...): found once, remembered.
_ref_types: set[type] = set()


class _TooDeep(Exception):
    pass


def _scan(obj: Any, budget: int) -> bool:
    """Check that ``obj`` can be encoded; return True if it needs the hooked encoder.

    ``budget`` is how many more CBOR nesting levels are allowed. Raises ``TypeError``
    for a value of an unsupported type and ``_TooDeep`` past the budget (which also
    stops reference cycles).
    """
    kind = type(obj)
    # Dicts and lists first, and their scalar items checked inline: this is the hot path.
    if kind is dict:
        if budget <= 0:
            raise _TooDeep
        budget -= 1
        hooks = False
        for key in obj:
            key_type = type(key)
            if key_type is str or key_type is bytes:
                continue
            if not hooks:
                # Any other key: the dict travels as TAG_MAP, one level more.
                hooks = True
                if budget <= 0:
                    raise _TooDeep
                budget -= 1
            if key_type not in _NATIVE_LEAVES:
                _scan(key, budget)
        for value in obj.values():
            if type(value) not in _NATIVE_LEAVES and _scan(value, budget):
                hooks = True
        return hooks
    if kind is list:
        if budget <= 0:
            raise _TooDeep
        budget -= 1
        hooks = False
        for item in obj:
            if type(item) not in _NATIVE_LEAVES and _scan(item, budget):
                hooks = True
        return hooks
    if kind in _NATIVE_LEAVES:
        return False
    return _scan_other(obj, kind, budget)


def _scan_other(obj: Any, kind: type, budget: int) -> bool:
    if kind is tuple or kind is frozenset or kind is set:
        # A tag and an array: two CBOR levels. Sets alone are native (tag 258).
        if budget <= 1:
            raise _TooDeep
        budget -= 2
        hooks = kind is not set
        for item in obj:
            if type(item) not in _NATIVE_LEAVES and _scan(item, budget):
                hooks = True
        return hooks
    if kind in _TAGGED_LEAVES or kind in _by_type:
        return True
    if kind is MonitorStatus:
        if budget <= 1:
            raise _TooDeep
        for field in (obj.info, obj.type, obj.value):
            _scan(field, budget - 2)
        return True
    if isinstance(obj, BaseException):
        return True
    if isinstance(obj, type):
        _class_name(obj)  # raises TypeError for classes we do not send
        return True
    if _is_ref_type(kind):
        return True
    raise TypeError(_unsupported_message(obj))


def _is_ref_type(kind: type) -> bool:
    if kind in _ref_types:
        return True
    if callable(getattr(kind, "_triopycos_ref_", None)):
        _ref_types.add(kind)
        return True
    return False


def _unsupported_message(obj: object) -> str:
    kind = type(obj)
    where = "" if kind.__module__ == "builtins" else f" ({_qualified_name(kind)})"
    hint = _never_sent(obj)
    if hint is None:
        if kind in (bytearray, memoryview):
            hint = "send bytes instead"
        else:
            hint = (
                "if it is a plain data class (its fields are values that can be sent), "
                "register it with triopycos.register_type(); else send plain values"
            )
    return f"cannot encode object of type {kind.__qualname__!r}{where}: {hint}"


# What no registration can make travel: it exists only in this process.  Told apart
# so the error does not suggest register_type() for them (a registered lock or file
# would "travel" as a dead copy of its __dict__).
_CODE_TYPES: Final = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    functools.partial,
)
_RUNNING_TYPES: Final = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
# Checked by name along the class's MRO, so trio's, asyncio's and multiprocessing's
# primitives are recognised without importing them here.
_SYNC_MODULES: Final = frozenset({"threading", "_thread", "trio", "asyncio", "multiprocessing"})
_SYNC_NAMES: Final = frozenset(
    {"lock", "rlock", "strictfifolock", "condition", "semaphore", "boundedsemaphore"}
    | {"capacitylimiter", "event", "barrier"}
)
_SOCKET_NAMES: Final = frozenset({"sockettype", "socketstream", "sslstream", "socketlistener"})


def _never_sent(obj: object) -> str | None:
    """Why ``obj`` can never be sent, for the kinds of object that never can."""
    if isinstance(obj, _CODE_TYPES):
        return (
            "functions cannot be sent (a message carries data, not code); to run code "
            "on another node, register it there as an RPS and call that, or send a "
            "value the receiver maps to a function"
        )
    if isinstance(obj, _RUNNING_TYPES):
        return "running code (a generator or coroutine) cannot be sent; start it as a task"
    if isinstance(obj, types.ModuleType):
        return "modules cannot be sent; send the name of what the receiver should use"
    if isinstance(obj, io.IOBase) or type(obj).__name__ == "AsyncIOWrapper":
        return (
            "open files cannot be sent (they belong to this process); send their "
            "content as bytes, or the file itself with pycos.send_file()"
        )
    if isinstance(obj, socket.socket):
        return "sockets cannot be sent (they belong to this process); peers talk by messages"
    for cls in type(obj).__mro__:
        module = cls.__module__.partition(".")[0]
        name = cls.__name__.lstrip("_").lower()
        if module == "trio" and name in _SOCKET_NAMES:
            return "sockets cannot be sent (they belong to this process); peers talk by messages"
        if (module in _SYNC_MODULES or module == "triopycos") and name in _SYNC_NAMES:
            return (
                "locks and other synchronization objects cannot be sent (they work only "
                "inside one process); coordinate nodes with messages, e.g. a task that "
                "hands out the lock"
            )
    return None


def _class_name(cls: type) -> str:
    """The wire name of a class we may send: registered, or an exception class."""
    registration = _by_type.get(cls)
    if registration is not None:
        return registration.name
    if issubclass(cls, BaseException):
        return _qualified_name(cls)
    raise TypeError(
        f"cannot encode the class {cls.__qualname__!r}: only exception classes and "
        "registered classes can be sent"
    )


# -- exceptions -----------------------------------------------------------------------


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


def _exception_class(name: str) -> type[BaseException] | None:
    """The local class for an exception type name, if it is one we rebuild."""
    registration = _by_name.get(name)
    if registration is not None:
        cls = registration.cls
        return cls if issubclass(cls, BaseException) else None
    module, _, qualname = name.rpartition(".")
    if module == "builtins":
        candidate = getattr(builtins, qualname, None)
        if isinstance(candidate, type) and issubclass(candidate, BaseException):
            return candidate
    return None


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


# -- the codec --------------------------------------------------------------------------

_Hook = Callable[[cbor2.CBOREncoder, Any], None]
_MICROSECOND: Final = timedelta(microseconds=1)
_DAY_US: Final = 86_400_000_000
_dumps = cbor2.dumps
_loads = cbor2.loads


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> NoReturn:
    raise DecodeError(f"unknown CBOR tag {tag.tag}")


def _error_text(exc: BaseException) -> str:
    """A bounded, escaped account of an error raised while decoding a peer's bytes
    (its text may quote them)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    name = type(exc).__name__
    return f"{name}: {escape(text)}" if text else name


def _check_hashes(items: Collection[object], what: str) -> None:
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
    _check_hashes(value, "set")
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
    _check_hashes(keys, "map")
    try:
        result = dict(zip(keys, value[1::2], strict=True))
    except TypeError:
        raise DecodeError("map has an unhashable key") from None
    if len(result) != len(keys):
        raise DecodeError("map has a duplicate key")
    return result


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


def _decode_tuple(value: object, immutable: bool) -> tuple[object, ...]:
    if type(value) is tuple:
        return value
    if type(value) is list:
        return tuple(value)
    raise DecodeError("tuple payload must be an array")


def _decode_frozenset(value: object, immutable: bool) -> frozenset[object]:
    if not isinstance(value, (list, tuple)):
        raise DecodeError("frozenset payload must be an array")
    _check_hashes(value, "frozenset")
    try:
        return frozenset(value)
    except TypeError:
        raise DecodeError("frozenset holds an unhashable item") from None


def _iso_datetime(text: object) -> datetime:
    text = _text(text, "datetime text")
    if len(text) > _MAX_DATETIME_TEXT:
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


def _decode_decimal(value: object, immutable: bool) -> Decimal:
    text = _text(value, "Decimal payload")
    if len(text) > _MAX_DECIMAL_TEXT:
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


def _decode_exception(value: object, immutable: bool) -> BaseException:
    name, args, text = _array(value, 3, "exception")
    name = _text(name, "exception type name")
    text = _text(text, "exception traceback")
    if not isinstance(args, (list, tuple)):
        raise DecodeError("exception args must be an array")
    args = tuple(args)
    cls = _exception_class(name)
    exc = _rebuild_exception(cls, args) if cls is not None else None
    if exc is None:
        exc = RemoteError(name, args, text)
    exc.remote_traceback = text  # type: ignore[attr-defined]
    return exc


def _decode_class(value: object, immutable: bool) -> type:
    name = _text(value, "class name")
    registration = _by_name.get(name)
    if registration is not None:
        return registration.cls
    return _exception_class(name) or RemoteError


def _decode_registered(value: object, immutable: bool) -> object:
    name, payload = _array(value, 2, "registered type")
    name = _text(name, "registered type name")
    registration = _by_name.get(name)
    if registration is None:
        raise DecodeError(f"type {describe(name)} is not registered here (see register_type)")
    if registration.decode is None:
        raise DecodeError(f"type {describe(name)} is registered here as an exception")
    return registration.decode(payload)


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


def _encode_class(encoder: cbor2.CBOREncoder, cls: type) -> None:
    encoder.encode_semantic(TAG_CLASS, _class_name(cls))


def _encode_ref_object(encoder: cbor2.CBOREncoder, obj: Any) -> None:
    ref = obj._triopycos_ref_()
    if type(ref) is not Ref:
        raise TypeError(f"{type(obj).__qualname__}._triopycos_ref_() must return a Ref")
    _encode_ref(encoder, ref)


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
    type: _encode_class,
}


class Codec:
    """Encodes messages to bytes and back.

    ``resolve_ref``, if given, is called with every ``Ref`` decoded and its result
    replaces the ``Ref`` (that is how a node turns references back into its ``Task``
    and ``Channel`` objects). It should not raise: if it does, ``decode`` raises
    ``DecodeError``.

    ``max_depth`` bounds nesting (each list, dict, tuple, set... is one or two CBOR
    levels): deeper messages fail to encode with ``ValueError`` and fail to decode
    with ``DecodeError``.

    ``encode`` raises ``TypeError`` (naming the type) for a value it cannot send, and
    ``ValueError`` for a value it cannot send as it is (too deep, a reference cycle, a
    str with lone surrogates). ``decode`` raises only ``DecodeError``.
    """

    __slots__ = ("_decoders", "_encoders", "_encoders_version", "_max_depth", "_resolve_ref")

    def __init__(
        self,
        resolve_ref: Callable[[Ref], object] | None = None,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int):
            raise TypeError("max_depth must be an int")
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be in 1..{MAX_DEPTH_LIMIT}")
        self._resolve_ref = resolve_ref
        self._max_depth = max_depth
        self._encoders: dict[type, _Hook] = {}
        self._encoders_version = -1
        decoders: dict[int, Callable[[Any, bool], object]] = {
            number: _refuse_tag(number) for number in _CBOR2_TAGS_REFUSED
        }
        decoders.update(
            {
                _TAG_POSITIVE_BIGNUM: _decode_positive_bignum,
                _TAG_NEGATIVE_BIGNUM: _decode_negative_bignum,
                _TAG_SET: _decode_set,
                TAG_MAP: _decode_map,
                TAG_TUPLE: _decode_tuple,
                TAG_FROZENSET: _decode_frozenset,
                TAG_DATETIME: _decode_datetime,
                TAG_DECIMAL: _decode_decimal,
                TAG_LOCATION: _decode_location,
                TAG_REF: self._decode_ref,
                TAG_MONITOR_STATUS: _decode_monitor_status,
                TAG_PEER_STATUS: _decode_peer_status,
                TAG_EXCEPTION: _decode_exception,
                TAG_CLASS: _decode_class,
                TAG_REGISTERED: _decode_registered,
            }
        )
        self._decoders = decoders

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def encode(self, obj: object) -> bytes:
        """Encode one message."""
        try:
            payload = self._encode_hooked(obj) if _scan(obj, self._max_depth) else _dumps(obj)
        except (_TooDeep, RecursionError):
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
            _check_bignums(payload)
        return payload

    def decode(self, data: bytes) -> object:
        """Decode one message; anything wrong with ``data`` raises ``DecodeError``."""
        try:
            return _loads(
                data,
                tag_hook=_unknown_tag,
                semantic_decoders=self._decoders,
                max_depth=self._max_depth + _LEAF_DEPTH_SLACK,
                allow_indefinite=False,
                allow_duplicate_keys=False,
                # Native maps: str and bytes keys only (randomized hashes); other
                # keys come in TAG_MAP, whose decoder bounds hash collisions.
                strict_hashable_types=True,
            )
        except cbor2.CBORDecodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, DecodeError):
                # Our decoders' own words: they never quote a peer's value unescaped.
                raise DecodeError(str(cause)) from exc
            detail = _error_text(exc)
            if cause is not None:
                detail += f" ({_error_text(cause)})"
            raise DecodeError(f"undecodable message: {detail}") from exc
        except Exception as exc:  # cbor2 wraps everything, but never let anything else out
            raise DecodeError(f"undecodable message: {_error_text(exc)}") from exc

    # -- encoding with hooks ------------------------------------------------------

    def _encode_hooked(self, obj: object) -> bytes:
        if self._encoders_version != _registry_version:
            encoders = dict(_STATIC_HOOKS)
            for cls, registration in _by_type.items():
                encoders[cls] = (
                    self._encode_exception
                    if registration.encode is None
                    else self._encode_registered
                )
            self._encoders = encoders
            self._encoders_version = _registry_version
        return _dumps(obj, encoders=self._encoders, default=self._default)

    def _default(self, encoder: cbor2.CBOREncoder, obj: object) -> None:
        # Reached for types without an exact entry in the encoders table.
        if isinstance(obj, BaseException):
            self._encode_exception(encoder, obj)
        elif isinstance(obj, type):
            _encode_class(encoder, obj)
        elif _is_ref_type(type(obj)):
            _encode_ref_object(encoder, obj)
        else:
            raise TypeError(_unsupported_message(obj))

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
            registration = _by_type.get(type(exc))
            name = registration.name if registration else _qualified_name(type(exc))
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
        registration = _by_type[type(obj)]
        assert registration.encode is not None
        payload = registration.encode(obj)
        # The scan did not see the payload: check it here, with a depth budget of its own.
        try:
            _scan(payload, self._max_depth)
        except _TooDeep:
            raise ValueError(
                f"cannot encode {registration.name}: its payload is nested too deeply"
            ) from None
        encoder.encode_semantic(TAG_REGISTERED, [registration.name, payload])

    # -- decoding -----------------------------------------------------------------

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


class _BigInt(Exception):
    pass


def _probe_bignum(value: object, immutable: bool) -> None:
    if type(value) is bytes and len(value) > MAX_BIGNUM_BYTES:
        raise _BigInt


def _ignore_tag(value: object, immutable: bool) -> None:
    return None


_BIGNUM_PROBE: Final[dict[int, Callable[[Any, bool], object]]] = {
    number: _ignore_tag for number in _CBOR2_TAGS_REFUSED | CBOR2_TAGS_KEPT
}
_BIGNUM_PROBE[_TAG_POSITIVE_BIGNUM] = _BIGNUM_PROBE[_TAG_NEGATIVE_BIGNUM] = _probe_bignum


def _check_bignums(payload: bytes) -> None:
    """``ValueError`` if an encoded message holds an int a peer would refuse."""
    try:
        _loads(
            payload,
            tag_hook=lambda tag, immutable: None,
            semantic_decoders=_BIGNUM_PROBE,
            max_depth=MAX_DEPTH_LIMIT + _LEAF_DEPTH_SLACK,
        )
    except cbor2.CBORDecodeError as exc:
        if isinstance(exc.__cause__, _BigInt):
            raise ValueError(
                f"cannot encode an int of more than {MAX_BIGNUM_BYTES * 8} bits: "
                "a peer would refuse it"
            ) from None
        raise AssertionError("the bignum check could not read an encoded message") from exc


def _refuse_any_tag(tag: cbor2.CBORTag, immutable: bool) -> NoReturn:
    raise DecodeError(f"CBOR tag {tag.tag} is not accepted here")


_NO_TAGS: Final[dict[int, Callable[[Any, bool], object]]] = {
    number: _refuse_tag(number) for number in _CBOR2_TAGS_REFUSED | CBOR2_TAGS_KEPT
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
        raise DecodeError(f"undecodable: {_error_text(exc)}") from exc
    except Exception as exc:
        raise DecodeError(f"undecodable: {_error_text(exc)}") from exc


_default_codec = Codec()
encode: Final = _default_codec.encode
decode: Final = _default_codec.decode

for _cls in (PycosError, ServiceError, ProtocolError, FrameTooLarge, DecodeError):
    register_type(_cls)
del _cls
