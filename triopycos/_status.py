"""``MonitorStatus`` and ``PeerStatus`` for the API layer: defined in ``values/``,
below ``protocol/``, which encodes them."""

from .values.status import MonitorStatus, PeerStatus

__all__ = ["MonitorStatus", "PeerStatus"]
