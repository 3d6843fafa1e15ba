"""triopycos: pycos's distributed message passing (netpycos) on trio.

Layers (docs/index.md has the whole map): the package's own modules are the API
(``Pycos`` and its parts in ``_node*.py``, ``Task``, ``Channel``, ``RPS``, the
remote operations); below it ``services/``, ``transport/`` and ``protocol/``; beside
it ``compat/`` (pycos's names), ``testing/`` (the virtual network) and ``cli/``.
"""

from ._channel import Channel
from ._node import Pycos
from ._node_open import open_pycos
from ._node_status import NodeStatistics, NodeStatus, PeerInfo
from ._rps import RPS
from ._supervisor import ChildSpec, Supervisor
from ._task import Task
from ._version import __version__ as __version__
from .protocol.codec import register_type
from .services.limits import Limits
from .values import (
    Location,
    MonitorStatus,
    PeerLost,
    PeerStatus,
    PycosError,
    RemoteError,
    ServiceError,
    SupervisorGaveUp,
)

__all__ = [
    "RPS",
    "Channel",
    "ChildSpec",
    "Limits",
    "Location",
    "MonitorStatus",
    "NodeStatistics",
    "NodeStatus",
    "PeerInfo",
    "PeerLost",
    "PeerStatus",
    "Pycos",
    "PycosError",
    "RemoteError",
    "ServiceError",
    "Supervisor",
    "SupervisorGaveUp",
    "Task",
    "open_pycos",
    "register_type",
]


def _public_paths(namespace: dict[str, object], names: list[str], module: str) -> None:
    """Public classes and functions print with the path users import them from
    (``triopycos.PeerLost``, not ``triopycos.values.errors.PeerLost``): in reprs and in
    tracebacks.  Wire names are not derived from this: the codec registered the
    library's exception types under their names before this runs."""
    for name in names:
        obj = namespace[name]
        if callable(obj):
            obj.__module__ = module


_public_paths(globals(), __all__, __name__)
