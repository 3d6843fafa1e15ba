"""pycos's names on triopycos, for pycos programs: ``import triopycos.compat as
pycos`` (or run a script unchanged with ``python -m triopycos.compat SCRIPT``, where
``import pycos``, ``import pycos.netpycos`` and ``import pycos.asyncfile`` resolve
here).

``Task``, ``Channel``, ``RPS``, ``Location`` and ``MonitorStatus`` are triopycos's own
classes: generator tasks (``task=None``, ``msg = yield task.receive()``) and ``async
def`` tasks are the same ``Task`` and message each other.  ``Pycos`` is pycos's
scheduler facade (a node in a background thread).  ``AsyncSocket``,
``AsyncThreadPool``, ``AsyncDBCursor``, ``pycos.asyncfile`` and hot swapping are
pycos's, on trio.  dispycos (and its HTTP monitor) is not provided; see
docs/pycos-users.md.
"""

from __future__ import annotations

from typing import Any

from .. import _context
from .._channel import Channel
from .._rps import RPS
from .._task import Task
from ..protocol.codec import Codec
from ..values import Location, MonitorStatus, PeerStatus
from . import _hotswap, config
from ._categorize import CategorizeMessages
from ._hotswap import HotSwapException
from ._logger import Logger, logger
from ._scheduler import Pycos, _default_node
from ._scheduler import __version__ as __version__
from ._socket import AsyncSocket
from ._struct import Singleton, Struct
from ._sync import Condition, Event, Lock, RLock, Semaphore
from ._threadpool import AsyncDBCursor, AsyncThreadPool

__all__ = [
    "RPS",
    "AsyncDBCursor",
    "AsyncSocket",
    "AsyncThreadPool",
    "CategorizeMessages",
    "Channel",
    "Condition",
    "Event",
    "HotSwapException",
    "Location",
    "Lock",
    "Logger",
    "MonitorStatus",
    "PeerStatus",
    "Pycos",
    "RLock",
    "Semaphore",
    "Singleton",
    "Struct",
    "Task",
    "config",
    "deserialize",
    "logger",
    "serialize",
]


# A task, channel or RPS created outside any task means the scheduler (pycos starts
# one on first use).
_context.default_node_hook = _default_node

# Generator tasks may swap their bodies (pycos's Task.hot_swap).
_hotswap.install()

_codec = Codec()


def serialize(obj: Any) -> bytes:
    """Bytes for ``obj`` with triopycos's codec (CBOR; no pickle: what is not a
    wire value raises ``TypeError``)."""
    return _codec.encode(obj)


def deserialize(data: bytes) -> Any:
    return _codec.decode(data)
