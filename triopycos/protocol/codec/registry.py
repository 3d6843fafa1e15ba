"""The type registry: which classes travel under which names (tag ``TAG_REGISTERED``,
and the names of exception types), for one codec.

Registries form a tree.  ``default_types`` is the process's: the library's own
errors, and whatever ``register_type`` added (usually at import time, before any node
exists).  Each node's codec has a child of it (``TypeRegistry(default_types)``): the
child sees every registration of its parent, also those made after the child was
created, plus its own (``Pycos.register_type``), which no other node sees.  Where a
parent's registration would clash with one of the child's own (same name or same
class), the child's own stays.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import threading
import weakref
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar, cast
from uuid import UUID

from ...values.errors import PeerLost, PycosError, RemoteError, ServiceError
from ...values.location import Location
from ...values.status import MonitorStatus, PeerStatus
from ..errors import DecodeError, FrameTooLarge, ProtocolError
from ..printable import escape
from .ref import Ref

__all__ = ["Registration", "TypeRegistry", "default_types", "qualified_name", "register_type"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    cls: type
    name: str
    # Both None: an exception class sent as an exception (type name, args, traceback).
    encode: Callable[[Any], object] | None
    decode: Callable[[Any], object] | None


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

# Registrations are rare and may come from any thread (a module imported by the compat
# facade's main thread while a node runs in its own), so they take one lock shared by
# all registries.  Codecs only look single keys up, which the GIL keeps atomic, except
# when they list the registrations to build an encoder table (``registrations()``).
_lock = threading.Lock()


class TypeRegistry:
    """The registered types one codec knows: its parent's, and its own.

    ``by_name`` and ``by_type`` are the merged view, kept up to date in place (codecs
    hold on to these very dicts); ``version`` grows with every change to them.
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_own_by_name",
        "_own_by_type",
        "by_name",
        "by_type",
        "version",
    )

    def __init__(self, parent: TypeRegistry | None = None) -> None:
        self._own_by_name: dict[str, Registration] = {}
        self._own_by_type: dict[type, Registration] = {}
        # Weak: a node's registry goes away with the node.
        self._children: weakref.WeakSet[TypeRegistry] = weakref.WeakSet()
        self.version = 0
        with _lock:
            self.by_name: dict[str, Registration] = {}
            self.by_type: dict[type, Registration] = {}
            if parent is not None:
                self.by_name.update(parent.by_name)
                self.by_type.update(parent.by_type)
                parent._children.add(self)

    def register(
        self,
        cls: type[T],
        name: str | None = None,
        *,
        encode: Callable[[T], object] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> type[T]:
        """Register ``cls`` here (see ``register_type``); returns ``cls``."""
        if not isinstance(cls, type):
            raise TypeError(f"register_type() needs a class, not {cls!r}")
        if name is None:
            name = qualified_name(cls)
        elif not isinstance(name, str) or not name:
            raise TypeError("the registered name must be a non-empty str")
        if cls in _RESERVED_TYPES:
            raise ValueError(f"{cls.__qualname__} is encoded by triopycos itself")
        as_exception = issubclass(cls, BaseException) and encode is None and decode is None
        enc: Callable[[Any], object] | None = encode
        dec: Callable[[Any], object] | None = decode
        if not as_exception:
            default_enc, default_dec = _default_codec_for(cls)
            enc = enc or default_enc
            dec = dec or default_dec
        registration = Registration(cls, name, enc, dec)
        with _lock:
            taken = self.by_name.get(name)
            if taken is not None and taken.cls is not cls:
                raise ValueError(f"type name {name!r} is already registered for {taken.cls!r}")
            previous = self.by_type.get(cls)
            if previous is not None and previous.name != name:
                raise ValueError(f"{cls!r} is already registered as {previous.name!r}")
            self._own_by_name[name] = registration
            self._own_by_type[cls] = registration
            self._add(registration)
        return cls

    def _add(self, registration: Registration) -> None:
        # Under _lock.
        self.by_name[registration.name] = registration
        self.by_type[registration.cls] = registration
        self.version += 1
        for child in self._children:
            if (
                registration.name not in child._own_by_name
                and registration.cls not in child._own_by_type
            ):
                child._add(registration)

    def registrations(self) -> list[Registration]:
        """Every registration this registry's codec uses, at this moment."""
        with _lock:
            return list(self.by_type.values())

    def class_name(self, cls: type) -> str:
        """The wire name of a class we may send: registered, or an exception class."""
        registration = self.by_type.get(cls)
        if registration is not None:
            return registration.name
        if issubclass(cls, BaseException):
            return qualified_name(cls)
        raise TypeError(
            f"cannot encode the class {cls.__qualname__!r}: only exception classes and "
            "registered classes can be sent"
        )

    def exception_class(self, name: str) -> type[BaseException] | None:
        """The local class for an exception type name, if it is one we rebuild."""
        registration = self.by_name.get(name)
        if registration is not None:
            cls = registration.cls
            return cls if issubclass(cls, BaseException) else None
        module, _, qualname = name.rpartition(".")
        if module == "builtins":
            candidate = getattr(builtins, qualname, None)
            if isinstance(candidate, type) and issubclass(candidate, BaseException):
                return candidate
        return None


def qualified_name(cls: type) -> str:
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


#: The process's registry: the parent of every node's.
default_types: Final = TypeRegistry()

# The library's errors travel as themselves.  Their wire names are the paths they had
# when they first travelled, written out so that moving a class never changes them (a
# node of another version must still rebuild them).
for _cls, _name in [
    (PycosError, "triopycos._errors.PycosError"),
    (ServiceError, "triopycos._errors.ServiceError"),
    (PeerLost, "triopycos.PeerLost"),
    (ProtocolError, "triopycos.protocol.errors.ProtocolError"),
    (FrameTooLarge, "triopycos.protocol.errors.FrameTooLarge"),
    (DecodeError, "triopycos.protocol.errors.DecodeError"),
]:
    default_types.register(_cls, _name)
del _cls, _name


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

    The registration is process-wide: every node of the process knows it, those
    opened before the call and after it alike.  To register a type on one node only,
    use ``Pycos.register_type``.

    Registering a different class under a name already taken, or a class already
    registered under another name, raises ``ValueError``.
    """
    return default_types.register(cls, name, encode=encode, decode=decode)
