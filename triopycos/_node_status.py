"""What a node says about itself: ``NodeStatistics`` (``Pycos.statistics()``) and
``NodeStatus`` (``Pycos.status()``, for this node or a peer), and how a status travels.

``NodeStatistics`` is composed (``compose_statistics``) from the snapshots each part
of the node takes of its own counters: the task table, the name registry, and each
network service (peers, files, discovery).

A status crosses the wire as a plain map of codec values (see ``Kind.NODE_STATUS``),
not as a registered type: the receiving side checks every field and turns a bad
answer into ``None``, so a peer of another version or a faulty one cannot hand the
caller an object of the wrong shape.  Fields the receiver does not know are ignored,
so a newer node may add some.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .values import Location

if TYPE_CHECKING:
    from ._node_names import NameStatistics
    from ._node_network import NetworkStatistics
    from ._node_tasks import TaskStatistics

__all__ = [
    "NodeStatistics",
    "NodeStatus",
    "PeerInfo",
    "RemoteStatistics",
    "compose_statistics",
    "status_from_wire",
    "status_to_wire",
]


@dataclass(frozen=True)
class NodeStatistics:
    """A snapshot of a node's counters (``Pycos.statistics()``)."""

    tasks: int
    daemon_tasks: int
    tasks_started: int
    registered_tasks: int
    registered_channels: int
    peers: int
    handshakes_failed: int
    handshakes_refused_busy: int
    handshakes_pending: int
    messages_refused: int
    monitors_refused: int
    dials_refused: int
    results_dropped: int
    protocol_errors: int
    files_received: int
    files_refused: int
    datagrams_received: int
    datagrams_dropped: int


@dataclass(frozen=True, slots=True)
class RemoteStatistics:
    """A snapshot of the remote operations' counters (``RemoteOps.statistics()``)."""

    monitors_refused: int = 0
    dials_refused: int = 0
    results_dropped: int = 0


def compose_statistics(
    tasks: TaskStatistics,
    names: NameStatistics,
    remote: RemoteStatistics,
    network: NetworkStatistics,
) -> NodeStatistics:
    """The node's statistics, from its parts' own snapshots."""
    peers, files, discovery = network.peers, network.files, network.discovery
    return NodeStatistics(
        tasks=tasks.tasks,
        daemon_tasks=tasks.daemon_tasks,
        tasks_started=tasks.tasks_started,
        registered_tasks=names.tasks,
        registered_channels=names.channels,
        peers=peers.peers,
        handshakes_failed=peers.handshakes_failed,
        handshakes_refused_busy=peers.handshakes_refused_busy,
        handshakes_pending=peers.handshakes_pending,
        # Refused by a full mailbox here, or by a full outbox or the frame limit.
        messages_refused=tasks.messages_refused + peers.messages_refused,
        monitors_refused=remote.monitors_refused,
        dials_refused=remote.dials_refused,
        results_dropped=remote.results_dropped,
        protocol_errors=peers.protocol_errors,
        files_received=files.received,
        files_refused=files.refused,
        datagrams_received=discovery.datagrams_received,
        datagrams_dropped=discovery.datagrams_dropped,
    )


@dataclass(frozen=True)
class PeerInfo:
    """One connected peer, as the node that reports it knows it."""

    name: str
    location: Location


@dataclass(frozen=True)
class NodeStatus:
    """What ``Pycos.status()`` returns: a node's view of itself at one moment.

    ``locations`` lists every address the node serves on, the one its peers know it
    by (``location``) first.  ``tasks``, ``channels`` and ``rps`` are the names
    registered there, sorted; ``peers`` the nodes it is connected to.
    """

    name: str
    locations: tuple[Location, ...]
    tasks: tuple[str, ...]
    channels: tuple[str, ...]
    rps: tuple[str, ...]
    peers: tuple[PeerInfo, ...]
    statistics: NodeStatistics
    version: str

    @property
    def location(self) -> Location:
        """The address the node's peers know it by."""
        return self.locations[0]

    def as_json(self) -> dict[str, Any]:
        """The status as JSON-ready values (locations as ``"host:port"`` text)."""
        return {
            "name": self.name,
            "location": str(self.location),
            "locations": [str(loc) for loc in self.locations],
            "version": self.version,
            "tasks": list(self.tasks),
            "channels": list(self.channels),
            "rps": list(self.rps),
            "peers": [{"name": p.name, "location": str(p.location)} for p in self.peers],
            "statistics": dataclasses.asdict(self.statistics),
        }


_STATISTICS = tuple(field.name for field in dataclasses.fields(NodeStatistics))


def status_to_wire(status: NodeStatus) -> dict[str, Any]:
    """The map a node answers a ``NODE_STATUS`` request with."""
    return {
        "name": status.name,
        "locations": list(status.locations),
        "tasks": list(status.tasks),
        "channels": list(status.channels),
        "rps": list(status.rps),
        "peers": [[p.name, p.location] for p in status.peers],
        "statistics": dataclasses.asdict(status.statistics),
        "version": status.version,
    }


def status_from_wire(value: object) -> NodeStatus | None:
    """The ``NodeStatus`` in a peer's answer, or None if the answer is malformed."""
    if type(value) is not dict:
        return None
    try:
        name = _text(value["name"])
        locations = tuple(_location(loc) for loc in _items(value["locations"]))
        if not locations:
            return None
        tasks, channels, rps = (
            tuple(_text(n) for n in _items(value[key])) for key in ("tasks", "channels", "rps")
        )
        peers = tuple(_peer(item) for item in _items(value["peers"]))
        counters = value["statistics"]
        if type(counters) is not dict:
            return None
        statistics = NodeStatistics(**{key: _count(counters[key]) for key in _STATISTICS})
        version = _text(value["version"])
    except (KeyError, TypeError):
        return None
    return NodeStatus(name, locations, tasks, channels, rps, peers, statistics, version)


def _items(value: object) -> list[Any]:
    if type(value) is not list:
        raise TypeError("not a list")
    return value


def _text(value: object) -> str:
    if type(value) is not str:
        raise TypeError("not a str")
    return value


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise TypeError("not a count")
    return value


def _location(value: object) -> Location:
    if not isinstance(value, Location):
        raise TypeError("not a Location")
    return value


def _peer(value: object) -> PeerInfo:
    pair = _items(value)
    if len(pair) != 2:
        raise TypeError("not a peer")
    return PeerInfo(_text(pair[0]), _location(pair[1]))
