"""The floor: plain value types that every layer may use, and that travel in messages.

``Location`` (``location.py``), ``MonitorStatus`` and ``PeerStatus`` (``status.py``),
and the library's error set (``errors.py``).  Nothing here imports anything else of
triopycos, so ``protocol/`` can encode and rebuild these types without depending on
the layers above it; the API re-exports them as ``triopycos.Location`` and so on.
"""

from .errors import PeerLost, PycosError, RemoteError, ServiceError, SupervisorGaveUp
from .location import Location
from .status import MonitorStatus, PeerStatus

__all__ = [
    "Location",
    "MonitorStatus",
    "PeerLost",
    "PeerStatus",
    "PycosError",
    "RemoteError",
    "ServiceError",
    "SupervisorGaveUp",
]
