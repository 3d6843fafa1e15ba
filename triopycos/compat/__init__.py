"""pycos's names on triopycos, for pycos programs: ``import triopycos.compat as
pycos`` (or run a script unchanged with ``python -m triopycos.compat SCRIPT``, where
``import pycos`` and ``import pycos.netpycos`` resolve here).

``Task``, ``Channel``, ``RPS``, ``Location`` and ``MonitorStatus`` are triopycos's own
classes: generator tasks (``task=None``, ``msg = yield task.receive()``) and ``async
def`` tasks are the same ``Task`` and message each other.  ``Pycos`` is pycos's
scheduler facade (a node in a background thread).  What pycos has and this does not
(asynchronous sockets and files, thread pools, DB cursors, hot swapping, dispycos)
fails with an error saying so; see docs/pycos-users.md.
"""

from __future__ import annotations

from typing import Any

from .. import _node
from .._channel import Channel
from .._location import Location
from .._rps import RPS
from .._status import MonitorStatus, PeerStatus
from .._task import Task
from ..protocol.codec import Codec
from ._categorize import CategorizeMessages
from ._logger import Logger, logger
from ._scheduler import Pycos, _default_node
from ._scheduler import __version__ as __version__
from ._sync import Condition, Event, Lock, RLock, Semaphore

__all__ = [
    "RPS",
    "CategorizeMessages",
    "Channel",
    "Condition",
    "Event",
    "Location",
    "Lock",
    "Logger",
    "MonitorStatus",
    "PeerStatus",
    "Pycos",
    "RLock",
    "Semaphore",
    "Task",
    "deserialize",
    "logger",
    "serialize",
]


# A task, channel or RPS created outside any task means the scheduler (pycos starts
# one on first use).
_node.default_node_hook = _default_node

_codec = Codec()

NOT_COVERED = {
    "AsyncSocket": "use trio's sockets (trio.socket, trio.open_tcp_stream) in async def tasks",
    "AsyncThreadPool": "use trio.to_thread.run_sync in async def tasks",
    "AsyncDBCursor": "use trio.to_thread.run_sync with your database driver",
    "HotSwapException": "hot swapping task bodies is not supported",
    "Singleton": "Pycos is a singleton; other classes are not",
    "Struct": "use types.SimpleNamespace",
}


class NotCoveredError(ImportError):
    """A pycos feature triopycos.compat does not provide (see docs/pycos-users.md)."""


def __getattr__(name: str) -> Any:
    hint = NOT_COVERED.get(name)
    if hint is not None:
        raise NotCoveredError(f"pycos.{name} is not provided by triopycos.compat: {hint}")
    raise AttributeError(f"module 'pycos' (triopycos.compat) has no attribute {name!r}")


def serialize(obj: Any) -> bytes:
    """Bytes for ``obj`` with triopycos's codec (CBOR; no pickle: what is not a
    wire value raises ``TypeError``)."""
    return _codec.encode(obj)


def deserialize(data: bytes) -> Any:
    return _codec.decode(data)
