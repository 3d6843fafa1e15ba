"""Status messages sent to tasks: ``MonitorStatus`` and ``PeerStatus``."""

from __future__ import annotations

import enum

from .location import Location

__all__ = ["MonitorStatus", "PeerStatus"]


class MonitorStatus:
    """Sent to a task's monitors when it ends.

    ``info`` is the task that ended; ``type`` says how it ended: ``StopIteration``
    (returned; ``value`` is the return value), ``GeneratorExit`` (terminated),
    an exception type (``value`` is the traceback text), or ``PeerLost`` style
    library errors when the task's node became unreachable.
    """

    __slots__ = ("info", "type", "value")

    def __init__(self, info: object, type: object, value: object = None) -> None:
        self.info = info
        self.type = type
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MonitorStatus):
            return NotImplemented
        return (self.info, self.type, self.value) == (other.info, other.type, other.value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MonitorStatus({self.info!r}, {self.type!r}, {self.value!r})"


class _Status(enum.IntEnum):
    Online = 1
    Offline = 0


class PeerStatus:
    """Sent to the task registered with ``Pycos.peer_status`` when a peer comes or goes."""

    __slots__ = ("location", "name", "status")

    Online = _Status.Online
    Offline = _Status.Offline

    def __init__(self, location: Location, name: str, status: int) -> None:
        self.location = location
        self.name = name
        self.status = _Status(status)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeerStatus):
            return NotImplemented
        return (self.location, self.name, self.status) == (
            other.location,
            other.name,
            other.status,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PeerStatus({self.location!r}, {self.name!r}, {self.status.name})"
