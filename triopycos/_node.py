"""``Pycos``: one node, the API's face on parts that each hold one responsibility.

::

    Pycos              the public methods, and the members sibling modules use
    ├─ _config         NodeConfig: its settings, checked once       _node_config.py
    ├─ _task_table     TaskTable: tasks, their ids, finish()        _node_tasks.py
    ├─ _names          NameRegistry: registered names, locate       _node_names.py
    ├─ _thread         NodeThread: calls from other threads         _threads.py
    ├─ _network        NodeNetwork: peers, listener, discovery,     _node_network.py
    │                  files (once it runs)
    └─ _remote         RemoteOps: remote operations,        _remote.py
                       and serving peers (the dispatcher)   _serve.py

``open_pycos`` runs a node (``_node_open.py``); ``current_node`` says which node a
call means (``_context.py``).  ``statistics()`` composes each part's own snapshot
(``_node_status.compose_statistics``).

The attributes that ``_task.py``, ``_channel.py``, ``_rps.py`` and ``_remote.py`` read
on every message (``_tasks``, ``_peers``, ``_max_mailbox``, ``_thread_id``,
``_encode_local``, ``_codec``, ...) are plain attributes here, bound to the parts'
own objects, so the message path pays for no indirection.
"""

from __future__ import annotations

import os
import secrets
import sys
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import trio

from ._channel import Channel
from ._context import current_node
from ._node_config import NodeConfig, check_port
from ._node_names import Kind, NameRegistry
from ._node_network import NetworkStatistics, NodeNetwork, open_listening
from ._node_status import NodeStatistics, NodeStatus, PeerInfo, compose_statistics
from ._node_tasks import TaskTable
from ._remote import RemoteOps
from ._rps import RPS
from ._task import Task
from ._task_arguments import check_timeout
from ._threads import NodeThread
from ._version import __version__
from .protocol.codec import Codec, Ref, TypeRegistry, default_types
from .services.discovery import Discovery
from .services.files import del_file, send_file
from .services.peers import PeerManager
from .services.timer import Timer
from .values import Location, PycosError

__all__ = ["Kind", "NodeStatistics", "Pycos", "current_node"]

R = TypeVar("R")


class Pycos:
    """One node.  Create it with ``async with open_pycos(...) as pycos``."""

    #: Where received files go and how big they may be; changing them on a running
    #: node takes effect at the next file.
    dest_path: str
    max_file_size: int | None

    def __init__(self, config: NodeConfig, location: Location) -> None:
        # The node's parts.  Its siblings (Task, Channel, RPS, the dispatcher, the
        # supervisors) use the parts' own small interfaces, not methods of this
        # class: _task_table (TaskTable), _names (NameRegistry), _thread
        # (NodeThread), _timer (Timer), _remote (RemoteOps), _peers (PeerManager),
        # _codec (Codec); plus a few values read on the message path (_node_id,
        # _thread_id, _tasks, _max_mailbox, _encode_local) and _check_open, _forget,
        # _wire_copy, _locate, which span parts.
        self._config = config
        self._node_id = config.node_id if config.node_id is not None else secrets.token_bytes(16)
        self._location = location
        self._name = config.name if config.name is not None else str(location)
        self.dest_path = config.dest_path
        self.max_file_size = config.max_file_size
        self._closed = False
        self._terminated = False
        self._root_scope: trio.CancelScope | None = None
        self._task_table = TaskTable()
        self._names = NameRegistry(lambda: self._name)
        # Its own registry (Pycos.register_type), under the process's (register_type).
        self._codec = Codec(resolve_ref=self._resolve_ref, types=TypeRegistry(default_types))
        # Timeouts of receive/deliver/finish... (services/timer.py); its task runs
        # in the task nursery, so it lives as long as the tasks that wait.
        self._timer = Timer()
        self._remote = RemoteOps(self)
        self._network: NodeNetwork | None = None
        self._stream_send: dict[Location, bool] = {}
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        # Made inside the trio run (by open_pycos): the trio thread running the node
        # and its token are this one's (see _threads.py).
        self._thread = NodeThread(lambda: self._name, lambda: self._closed)
        # Read on the message path: plain attributes (see the module docstring).
        self._thread_id = self._thread.ident
        self._token = self._thread.token
        self._tasks = self._task_table.tasks
        self._ended = self._task_table.ended
        # Tests: local messages go through the codec as a peer's would (_wire_copy).
        self._encode_local = config.encode_local
        # Limits.max_mailbox (sys.maxsize for None: one comparison per queued message
        # either way).
        max_mailbox = config.limits.max_mailbox
        self._max_mailbox = sys.maxsize if max_mailbox is None else max_mailbox
        # Set when the network services start.
        self._peers: PeerManager | None = None
        self._discovery: Discovery | None = None

    # -- public -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name (default: its location as text)."""
        return self._name

    @property
    def location(self) -> Location:
        """Where the node's network services are."""
        return self._location

    def register_type(
        self,
        cls: type[R],
        name: str | None = None,
        *,
        encode: Callable[[R], object] | None = None,
        decode: Callable[[Any], R] | None = None,
    ) -> type[R]:
        """Let instances of ``cls`` travel to and from this node: as
        ``triopycos.register_type`` (same arguments, returns ``cls``), but for this
        node only; the other nodes of the process do not know it.  The node knows
        the process's registrations too, also later ones; registering a name or a
        class differently from them raises ``ValueError``."""
        return self._codec.types.register(cls, name, encode=encode, decode=decode)

    @property
    def udp_port(self) -> int:
        """The discovery port the node was opened with."""
        return self._config.udp_port

    @property
    def node(self) -> str | Sequence[str] | None:
        """The ``node`` argument the node was opened with."""
        return self._config.node

    @property
    def ext_ip_addr(self) -> str | Sequence[str] | None:
        """The ``ext_ip_addr`` argument the node was opened with."""
        return self._config.ext_ip_addr

    @property
    def socket_family(self) -> int | None:
        """The ``socket_family`` argument the node was opened with."""
        return self._config.socket_family

    @property
    def ipv4_udp_multicast(self) -> bool:
        """Whether IPv4 discovery uses multicast (else broadcast)."""
        return self._config.ipv4_udp_multicast

    @property
    def discover_peers(self) -> bool:
        """Whether the node announces itself and connects to the nodes it hears."""
        return self._config.discover_peers

    @property
    def certfile(self) -> str | None:
        """The TLS certificate file the node was opened with."""
        return self._config.certfile

    @property
    def keyfile(self) -> str | None:
        """The TLS key file the node was opened with."""
        return self._config.keyfile

    @property
    def announce_interval(self) -> float | None:
        """Seconds between discovery announcements (None: announced only at start)."""
        return self._config.announce_interval

    def spawn(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task:
        """Start ``fn(*args, **kwargs)`` as a task on this node and return it."""
        task = Task.__new__(Task)
        task._start(self, fn, args, kwargs)
        return task

    def peers(self) -> list[Location]:
        """Locations of the peers currently connected."""
        if self._peers is None:
            return []
        return [conn.location for conn in self._peers.by_id.values()]

    async def peer(
        self,
        loc: Location | str,
        udp_port: int = 9705,
        stream_send: bool = False,
        relay: bool = False,
    ) -> int:
        """Peer with the node at ``loc``: 0, or -1 on failure.

        With a port, connect to that node (0 once it is a peer).  With a host name or
        address, or a port-0 ``Location``, ask every node on that host (through its
        ``udp_port``) to connect to us: 0 once the request is sent; they appear in
        ``peers()`` (and ``locate``) as they connect.  ``relay`` asks the host to pass
        the request on to its whole network, so every node there connects to us.
        Connections are always persistent here, so ``stream_send`` is accepted and
        remembered but changes nothing.
        """
        if isinstance(loc, str):
            loc = Location(loc, 0)
        if not isinstance(loc, Location):
            raise TypeError(f"peer() needs a Location or a host, not {type(loc).__name__}")
        check_port("udp_port", udp_port, optional=False)
        self._stream_send[loc] = bool(stream_send)
        network = self._network
        if network is None:
            await trio.lowlevel.checkpoint()
            return -1
        asked = True
        if loc.port == 0 or relay:
            asked = await network.discovery.ping(loc.addr, udp_port, bool(relay))
            if loc.port == 0:
                return 0 if asked else -1
        conn = await network.peers.connect(loc)
        return 0 if conn is not None else -1

    def peer_status(self, task: Task | None) -> None:
        """Send ``PeerStatus`` messages to ``task`` for every current and future peer
        coming online or going offline; ``None`` stops all such messages."""
        self._remote.set_status_task(task)

    async def close_peer(self, location: Location, timeout: float | None = None) -> int:
        """Say goodbye to the peer at ``location`` and close the connection: 0 / -1."""
        check_timeout(timeout)
        conn = self._peers.find(location) if self._peers is not None else None
        if conn is None:
            await trio.lowlevel.checkpoint()
            return -1
        conn.say_bye()
        await conn.flush(2.0 if timeout is None else timeout)
        conn.close(deliberately=True)
        return 0

    async def send_file(
        self,
        location: Location,
        file: str | os.PathLike[str],
        dir: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        timeout: float | None = None,
        *,
        progress: Callable[[int, int], object] | None = None,
    ) -> int | os.stat_result:
        """Send ``file`` to the node at ``location``, saved under its ``dest_path``
        (and ``dir``, a relative path): 0 sent; 1 the same file (size, mtime,
        permissions) is there already; the ``os.stat_result`` of a different file
        there when ``overwrite`` is false; -1 on any error.  ``timeout`` bounds each
        step (each chunk); see docs/files.md.

        ``progress``, if given, is called as ``progress(sent, total)`` (bytes) when
        the receiver has accepted the file and after each chunk is handed to the
        connection; it is not called when nothing is sent (1, a stat result, or a
        refusal up front).  It runs in the node's trio thread, so it must return
        quickly; an exception it raises ends the transfer and comes out of
        ``send_file``.
        """
        return await send_file(
            self._peers, location, file, dir, overwrite, timeout, progress=progress
        )

    async def del_file(
        self,
        location: Location,
        file: str | os.PathLike[str],
        dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Delete a file sent with ``send_file`` (same ``file`` and ``dir``) from the
        node at ``location``, and the folders that leaves empty: 0, or -1."""
        return await del_file(self._peers, location, file, dir, timeout)

    async def status(
        self, location: Location | None = None, timeout: float | None = None
    ) -> NodeStatus | None:
        """What the node at ``location`` says about itself: its name, locations,
        registered tasks, channels and RPSs, connected peers, statistics and version.
        ``None`` (the default) or this node's own location: this node, without the
        network.  Connects to the node first if it is not a peer.  ``None`` if it is
        unreachable, does not authenticate, or does not answer within ``timeout``."""
        if location is not None and not isinstance(location, Location):
            raise TypeError(f"location must be a Location, not {type(location).__name__}")
        check_timeout(timeout)
        if location is None or self._is_here(location):
            await trio.lowlevel.checkpoint()
            return self._status_here()
        return await self._remote.node_status(location, timeout)

    async def ping(self, location: Location, timeout: float | None = None) -> float | None:
        """Seconds one request takes to the node at ``location`` and back (trio's
        clock), connecting first if it is not a peer (connecting is not timed).
        ``None`` if it is unreachable, does not authenticate, or does not answer
        within ``timeout``; 0.0 for this node's own location."""
        if not isinstance(location, Location):
            raise TypeError(f"location must be a Location, not {type(location).__name__}")
        check_timeout(timeout)
        if self._is_here(location):
            await trio.lowlevel.checkpoint()
            return 0.0
        return await self._remote.round_trip(location, timeout)

    async def locate(self, name: str, timeout: float | None = None) -> Location | None:
        """Location of the node called ``name`` (this one or a peer); waits for it to
        appear until ``timeout`` (forever if None); None if it does not."""
        if not isinstance(name, str):
            raise TypeError(f"node name must be a str, not {type(name).__name__}")
        check_timeout(timeout)
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            while True:
                if name == self._name:
                    await trio.lowlevel.checkpoint()
                    return self._location
                if self._peers is None:
                    await trio.sleep_forever()
                    continue
                conn = self._peers.find_name(name)
                if conn is not None:
                    await trio.lowlevel.checkpoint()
                    return conn.location
                await self._peers.changed.wait()
        return None

    async def finish(self) -> None:
        """Wait until every non-daemon task of this node has ended."""
        await self._task_table.finish()

    def terminate(self) -> None:
        """Stop the node now: every task is cancelled and the ``async with`` ends."""
        self._closed = True
        self._terminated = True
        if self._root_scope is not None:
            self._root_scope.cancel()

    def statistics(self) -> NodeStatistics:
        """A snapshot of the node's counters."""
        network = self._network
        return compose_statistics(
            self._task_table.statistics(),
            self._names.statistics(),
            self._remote.statistics(),
            network.statistics() if network is not None else NetworkStatistics(),
        )

    def __repr__(self) -> str:
        return f"<Pycos {self._name!r} at {self._location}>"

    # -- status -------------------------------------------------------------------

    def _locations(self) -> list[Location]:
        """Every address the node serves on, the one its peers know it by first."""
        return list(self._peers.locations) if self._peers is not None else [self._location]

    def _is_here(self, location: Location) -> bool:
        if self._peers is None:
            return location == self._location
        return location in self._peers.locations

    def _status_here(self) -> NodeStatus:
        peers = self._peers
        names = self._names
        return NodeStatus(
            name=self._name,
            locations=tuple(self._locations()),
            tasks=names.sorted("task"),
            channels=names.sorted("channel"),
            rps=names.sorted("rps"),
            peers=tuple(
                PeerInfo(conn.name, conn.location)
                for conn in (peers.by_id.values() if peers else ())
            ),
            statistics=self.statistics(),
            version=__version__,
        )

    # -- tasks (used by Task; _node_tasks.py) -------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._task_table.nursery is None:
            raise PycosError(f"node {self._name!r} is not running")

    def _forget(self, task: Task) -> None:
        self._names.unregister_all("task", task)
        self._task_table.forget(task)

    # -- names (_node_names.py) ---------------------------------------------------

    async def _locate(
        self, kind: Kind, name: str, location: Location | None, timeout: float | None
    ) -> Any:
        return await self._names.locate(
            kind, name, location, timeout, here=self._location, remote=self._remote.locate
        )

    # -- references and messages --------------------------------------------------

    def _wire_copy(self, message: R) -> R:
        """What a peer would receive for ``message`` (``encode_local``): what cannot
        be sent fails here, at the send, exactly as it would for a remote task."""
        return cast(R, self._codec.decode(self._codec.encode(message)))

    def _resolve_ref(self, ref: Ref) -> object:
        """Turn a decoded reference into the object it names on this node."""
        if ref.kind == "task":
            if ref.node_id == self._node_id and type(ref.ident) is int:
                task = self._tasks.get(ref.ident) or self._ended.get(ref.ident)
                if task is not None:
                    return task
            return Task._reference(self, ref)
        if ref.kind == "channel":
            if ref.node_id == self._node_id:
                found = self._names.by_kind["channel"].get(ref.name)
                if found is not None:
                    return found
            return Channel._reference(self, ref)
        if ref.kind == "rps":
            if ref.node_id == self._node_id:
                found = self._names.by_kind["rps"].get(ref.name)
                if found is not None:
                    return found
            return RPS._reference(self, ref)
        return ref

    def _spawn_service(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn(*args)`` as part of the network service (it ends with the node)."""
        if self._network is not None and not self._closed:
            self._network.spawn(fn, *args)

    # -- running (by open_pycos, _node_open.py) -----------------------------------

    def _run_in(self, root: trio.CancelScope) -> None:
        """The node runs in ``root``: ``terminate()`` cancels it."""
        self._root_scope = root

    async def _serve_tasks(self, *, task_status: trio.TaskStatus[None]) -> None:
        await self._task_table.serve(self._timer, task_status=task_status)

    async def _serve_network(
        self, hosts: Sequence[str], *, task_status: trio.TaskStatus[None]
    ) -> None:
        listening = await open_listening(self._config, hosts)
        try:
            self._location = listening.advertised[0]
            if self._config.name is None:
                self._name = str(self._location)
            network = NodeNetwork(
                config=self._config,
                listening=listening,
                node_id=self._node_id,
                name=self._name,
                codec=self._codec,
                timer=self._timer,
                dispatch=self._remote.dispatch,
                is_reference=self._remote.is_reference,
                on_online=self._remote.on_online,
                on_offline=self._remote.on_offline,
                file_settings=self,
            )
        except BaseException:
            # Nothing serves them yet: close what was opened.
            await listening.aclose()
            raise
        self._network = network
        self._peers = network.peers
        self._discovery = network.discovery
        await network.serve(task_status=task_status)

    async def _finish_on_leaving(self) -> None:
        await self._task_table.finish_on_leaving(self._name)

    async def _close(self) -> None:
        """Leave in order: end the remaining (daemon) tasks, so their exit statuses
        are queued for remote monitors, then say goodbye to every peer."""
        self._closed = True
        if self._terminated or self._task_table.nursery is None:
            return
        with trio.CancelScope(shield=True):
            peers = self._peers
            await self._task_table.end_all(peers.limits.goodbye_timeout if peers else 2.0)
            if peers is not None:
                await peers.goodbye()
