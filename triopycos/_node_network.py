"""The network services of one node, built from its configuration and run together.

::

    network                 one service of the node: its failure is ServiceError("network")
    ├─ peers                the peer supervisor: handshakes, connections, heartbeats
    │                       (and the file receiver, for connections that carry a file)
    ├─ listener             accepts connections and hands each to peers at once
    └─ discovery            UDP announcements and pings

Where a node listens (``open_listening``): on each host of ``node``, at ``tcp_port``
(without one, the spec's 9705 if it is free, else any free port), only the listeners
of ``socket_family`` when it is given.  It tells its peers the addresses it listens
on, or, behind NAT, those of ``ext_ip_addr`` (same ports); the first is the one
peers know it by (``Pycos.location``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._node_config import NodeConfig
from .protocol.codec import Codec
from .protocol.messages import IsReference
from .services.discovery import Discovery, DiscoveryStatistics
from .services.files import FileReceiver, FileSettings, FileStatistics
from .services.listener import ListenerService, ListenerStatistics
from .services.peer import Dispatch, PeerConnection
from .services.peers import PeerManager, PeerServiceStatistics
from .services.timer import Timer
from .transport import Transport
from .transport.errors import ListenFailed, listen
from .values import Location, PycosError

__all__ = ["Listening", "NetworkStatistics", "NodeNetwork", "open_listening"]

log = logging.getLogger("triopycos.node")

Listeners = list[trio.abc.Listener[trio.abc.Stream]]


@dataclass(frozen=True, slots=True)
class NetworkStatistics:
    """Snapshots of each network service's counters (all zero before it runs)."""

    peers: PeerServiceStatistics = field(default_factory=PeerServiceStatistics)
    files: FileStatistics = field(default_factory=FileStatistics)
    discovery: DiscoveryStatistics = field(default_factory=DiscoveryStatistics)
    listener: ListenerStatistics = field(default_factory=ListenerStatistics)


@dataclass(frozen=True, slots=True)
class Listening:
    """The listeners a node opened, and the locations it tells its peers."""

    listeners: Listeners
    advertised: list[Location]

    async def aclose(self) -> None:
        for listener in self.listeners:
            await trio.aclose_forcefully(listener)


async def open_listening(config: NodeConfig, hosts: Sequence[str]) -> Listening:
    """Listen where ``config`` says, on ``hosts`` (see the module docstring)."""
    transport = config.transport
    ext = _as_list(config.ext_ip_addr)
    listeners: Listeners = []
    advertised: list[Location] = []
    try:
        for index, host in enumerate(hosts):
            opened = await _listen(transport, host, config.tcp_port, config.socket_family)
            listeners.extend(opened)
            for listener in opened:
                addr, port = transport.listener_address(listener)
                # Behind NAT: peers are told the gateway's address, same port.  A
                # link-local scope means nothing elsewhere: it is not advertised.
                public = ext[index] if index < len(ext) else addr.partition("%")[0]
                advertised.append(Location(str(ipaddress.ip_address(public)), port))
        if not listeners:
            raise PycosError(f"no address of the requested family to serve on in {list(hosts)}")
    except BaseException:
        # Nothing serves them yet: close what was opened before the failure.
        await Listening(listeners, advertised).aclose()
        raise
    return Listening(listeners, advertised)


async def _listen(
    transport: Transport, host: str, tcp_port: int | None, family: int | None
) -> Listeners:
    """Listeners on ``host`` (only those of ``family``, when given)."""
    if tcp_port is None:
        # The spec's default port if it is free, else any free port.
        try:
            listeners = await listen(transport, host, 9705)
        except ListenFailed:
            listeners = await _open_listeners(transport, host, 0)
    else:
        listeners = await _open_listeners(transport, host, tcp_port)
    if family is None:
        return listeners
    kept = []
    for listener in listeners:
        addr = transport.listener_address(listener)[0]
        if (socket.AF_INET6 if ":" in addr else socket.AF_INET) == family:
            kept.append(listener)
        else:
            await trio.aclose_forcefully(listener)
    return kept


async def _open_listeners(transport: Transport, host: str, port: int) -> Listeners:
    """The transport's listeners; its failure says where, in words (the OSError,
    with its errno, is the cause)."""
    try:
        return await listen(transport, host, port)
    except ListenFailed as exc:
        where = Location(host.partition("%")[0], port)
        raise PycosError(f"cannot listen on {where}: {exc.reason}") from exc.__cause__


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class NodeNetwork:
    """The network services of one node, on the listeners it opened; run them
    with ``serve``.  The callbacks are the node's handlers of what its peers send
    and of peers coming and going (``RemoteOps``)."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        listening: Listening,
        node_id: bytes,
        name: str,
        codec: Codec,
        timer: Timer,
        dispatch: Dispatch,
        is_reference: IsReference,
        on_online: Callable[[PeerConnection], None],
        on_offline: Callable[[PeerConnection], None],
        file_settings: FileSettings,
    ) -> None:
        transport = config.transport
        listeners = listening.listeners
        bound = [Location(*transport.listener_address(lst)) for lst in listeners]
        self.peers = PeerManager(
            transport=transport,
            node_id=node_id,
            name=name,
            secret=config.secret,
            codec=codec,
            limits=config.limits,
            dispatch=dispatch,
            is_reference=is_reference,
            on_online=on_online,
            on_offline=on_offline,
            timer=timer,
        )
        self.files = FileReceiver(file_settings, config.limits)
        self.peers.file_handler = self.files
        # Advertised first: the first location is the one peers know us by.
        self.peers.locations = list(dict.fromkeys([*listening.advertised, *bound]))
        self.listener = ListenerService(
            listeners,
            self.peers.accepted,
            lambda listener: str(Location(*transport.listener_address(listener))),
        )
        self.discovery = Discovery(
            transport=transport,
            peers=self.peers,
            secret=config.secret,
            udp_port=config.udp_port,
            addresses=[transport.listener_address(lst)[0] for lst in listeners],
            advertised=list(dict.fromkeys(listening.advertised)),
            ipv4_multicast=config.ipv4_udp_multicast,
            listen=config.discover_peers,
            announce_interval=config.announce_interval,
        )
        self._nursery: trio.Nursery | None = None

    def statistics(self) -> NetworkStatistics:
        return NetworkStatistics(
            self.peers.statistics(),
            self.files.statistics(),
            self.discovery.statistics(),
            self.listener.statistics(),
        )

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of the network service (it ends with it)."""
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Peers first: the listener hands it every connection it accepts.
                await nursery.start(self.peers.serve)
                await nursery.start(self.listener.serve)
                await nursery.start(self.discovery.serve)
                log.info(
                    "node %r serving at %s",
                    self.peers.name,
                    ", ".join(map(str, self.peers.locations)),
                )
                task_status.started()
        finally:
            self._nursery = None
            # Also when the listener never started: nothing else owns them.
            await self.listener.aclose()
