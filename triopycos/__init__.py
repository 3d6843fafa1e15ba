"""triopycos: pycos's distributed message passing (netpycos) on trio."""

from ._channel import Channel
from ._errors import PeerLost, PycosError, RemoteError, ServiceError
from ._location import Location
from ._node import Pycos, open_pycos
from ._node_status import NodeStatistics, NodeStatus, PeerInfo
from ._rps import RPS
from ._status import MonitorStatus, PeerStatus
from ._task import Task
from ._version import __version__ as __version__
from .protocol.codec import register_type
from .services.peers import Limits

__all__ = [
    "RPS",
    "Channel",
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
    "Task",
    "open_pycos",
    "register_type",
]
