"""The scan: one Python pass over a message before it is encoded.

It checks every value's exact type, bounds the nesting depth (cbor2's encoder has no
bound and would overflow the C stack), and says whether the slower hooked encoder is
needed: a message made only of None/bool/int/float/str/bytes/date/UUID in lists,
dicts and sets (the usual case) goes through cbor2's native encoder with no Python
hooks at all.  For a value that can never be sent, the ``TypeError`` says why.
"""

from __future__ import annotations

import functools
import io
import socket
import types
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import cbor2

from ...values.location import Location
from ...values.status import MonitorStatus, PeerStatus
from .ref import Ref
from .registry import TypeRegistry, qualified_name

__all__ = ["NATIVE_LEAVES", "Scan", "TooDeep", "is_ref_type", "make_scan", "unsupported_message"]

# Exact types cbor2's native encoder and decoder round-trip the way we want.
NATIVE_LEAVES: Final = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
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
# Types with a method giving their Ref (Task, Channel, RPS...): found once, remembered.
# A property of the class, the same for every codec.
_ref_types: set[type] = set()

#: ``scan(obj, budget) -> needs hooks``: see ``make_scan``.
Scan = Callable[[Any, int], bool]


class TooDeep(Exception):
    pass


def make_scan(registry: TypeRegistry) -> Scan:
    """The scan of a codec whose registered types are ``registry``'s.

    ``scan(obj, budget)`` checks that ``obj`` can be encoded and returns True if it
    needs the hooked encoder.  ``budget`` is how many more CBOR nesting levels are
    allowed.  Raises ``TypeError`` for a value of an unsupported type and
    ``TooDeep`` past the budget (which also stops reference cycles).
    """
    # A closure: the registry's dict and the recursion are cell lookups, as cheap as
    # the module globals they replace on this hot path.
    registered = registry.by_type
    native = NATIVE_LEAVES

    def scan(obj: Any, budget: int) -> bool:
        kind = type(obj)
        # Dicts and lists first, their scalar items checked inline: the hot path.
        if kind is dict:
            if budget <= 0:
                raise TooDeep
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
                        raise TooDeep
                    budget -= 1
                if key_type not in native:
                    scan(key, budget)
            for value in obj.values():
                if type(value) not in native and scan(value, budget):
                    hooks = True
            return hooks
        if kind is list:
            if budget <= 0:
                raise TooDeep
            budget -= 1
            hooks = False
            for item in obj:
                if type(item) not in native and scan(item, budget):
                    hooks = True
            return hooks
        if kind in native:
            return False
        return scan_other(obj, kind, budget)

    def scan_other(obj: Any, kind: type, budget: int) -> bool:
        if kind is tuple or kind is frozenset or kind is set:
            # A tag and an array: two CBOR levels. Sets alone are native (tag 258).
            if budget <= 1:
                raise TooDeep
            budget -= 2
            hooks = kind is not set
            for item in obj:
                if type(item) not in native and scan(item, budget):
                    hooks = True
            return hooks
        if kind in _TAGGED_LEAVES or kind in registered:
            return True
        if kind is MonitorStatus:
            if budget <= 1:
                raise TooDeep
            for field in (obj.info, obj.type, obj.value):
                scan(field, budget - 2)
            return True
        if isinstance(obj, BaseException):
            return True
        if isinstance(obj, type):
            registry.class_name(obj)  # raises TypeError for classes we do not send
            return True
        if is_ref_type(kind):
            return True
        raise TypeError(unsupported_message(obj))

    return scan


def is_ref_type(kind: type) -> bool:
    if kind in _ref_types:
        return True
    if callable(getattr(kind, "_triopycos_ref_", None)):
        _ref_types.add(kind)
        return True
    return False


def unsupported_message(obj: object) -> str:
    kind = type(obj)
    where = "" if kind.__module__ == "builtins" else f" ({qualified_name(kind)})"
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
