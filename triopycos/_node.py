"""``Pycos`` (one node) and ``open_pycos``, plus the current-node context variable.

Nursery tree of a node::

    open_pycos()             root nursery: its cancel scope is ``terminate()``
    ├─ services              (network services join here in later layers)
    └─ user-task nursery     every Task, each in its own CancelScope

Which node a call means: inside a task, the task's own node (each task sets the
context variable when it starts); elsewhere the innermost ``open_pycos`` block.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import math
import os
import secrets
import socket
import sys
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar, cast

import trio

from ._channel import Channel
from ._context import current_node_var
from ._dest_path import default_dest_path, make_private
from ._errors import PycosError, ServiceError, exception_leaves
from ._hostaddr import default_host
from ._location import Location
from ._node_status import NodeStatistics, NodeStatus, PeerInfo
from ._remote import RemoteOps
from ._rps import RPS
from ._task import Task, check_timeout
from ._threads import get_ident
from ._version import __version__
from .protocol.codec import Codec, Ref
from .protocol.handshake import MAX_LOCATIONS, MAX_NAME
from .services.discovery import Discovery, announce_interval_ok
from .services.files import FileReceiver, del_file, send_file
from .services.peers import Limits, PeerManager
from .services.timer import Timer
from .transport import TCPTransport, TLSTransport, Transport, os_error_reason

__all__ = ["NodeStatistics", "Pycos", "current_node", "open_pycos"]

log = logging.getLogger("triopycos.node")

_current_node = current_node_var

Kind = Literal["task", "channel", "rps"]
R = TypeVar("R")


# Set by triopycos.compat: the node a call from plain (non-trio) code means, pycos's
# implicit scheduler, started on first use.  Code inside a trio run is never given
# it: there, no current node stays an error.
default_node_hook: Callable[[], Pycos] | None = None


def current_node() -> Pycos:
    """The node a call without an explicit node means (see the module docstring)."""
    node = _current_node.get()
    if node is None and default_node_hook is not None and not trio.lowlevel.in_trio_run():
        node = default_node_hook()
    if node is None:
        raise PycosError(
            "no current triopycos node: call this inside `async with open_pycos(...)` "
            "or inside a task, or use pycos.spawn()"
        )
    return node


class Pycos:
    """One node.  Create it with ``async with open_pycos(...) as pycos``."""

    def __init__(
        self,
        *,
        node_id: bytes | None = None,
        name: str | None,
        location: Location,
        udp_port: int,
        node: str | Sequence[str] | None,
        ext_ip_addr: str | Sequence[str] | None,
        socket_family: int | None,
        ipv4_udp_multicast: bool,
        discover_peers: bool,
        secret: str,
        certfile: str | None,
        keyfile: str | None,
        dest_path: str,
        max_file_size: int | None,
        announce_interval: float | None = None,
        encode_local: bool = False,
    ) -> None:
        self._node_id = node_id if node_id is not None else secrets.token_bytes(16)
        self._location = location
        self._name = name if name is not None else str(location)
        self._name_from_location = name is None
        self.udp_port = udp_port
        self.node = node
        self.ext_ip_addr = ext_ip_addr
        self.socket_family = socket_family
        self.ipv4_udp_multicast = ipv4_udp_multicast
        self.discover_peers = discover_peers
        self._secret = secret
        self.certfile = certfile
        self.keyfile = keyfile
        self.dest_path = dest_path
        self.max_file_size = max_file_size
        self.announce_interval = announce_interval
        self._tasks: dict[int, Task] = {}
        # Limits.max_mailbox (sys.maxsize for None: one comparison per queued message
        # either way); _refused counts the messages refused by full mailboxes.
        self._max_mailbox = _mailbox_bound(Limits().max_mailbox)
        self._refused = 0
        self._task_counter = 0
        self._nondaemon = 0
        self._idle: trio.Event | None = None  # set when _nondaemon reaches 0
        self._daemons = 0
        self._registry: dict[Kind, dict[str, Any]] = {"task": {}, "channel": {}, "rps": {}}
        self._registry_changed = trio.Event()
        # Recently ended tasks, so a peer's finish()/monitor() that arrives just after
        # the end still gets the result (bounded: old entries fall off).
        self._ended: OrderedDict[int, Task] = OrderedDict()
        self._task_nursery: trio.Nursery | None = None
        self._tasks_gone = trio.Event()
        self._service_nursery: trio.Nursery | None = None
        self._root_scope: trio.CancelScope | None = None
        self._closed = False
        self._terminated = False
        self._codec = Codec(resolve_ref=self._resolve_ref)
        # Tests: local messages go through the codec as a peer's would (_wire_copy).
        self._encode_local = encode_local
        # Timeouts of receive/deliver/finish... (services/timer.py); its task runs
        # in the task nursery, so it lives as long as the tasks that wait.
        self._timer = Timer()
        self._remote = RemoteOps(self)
        self._peers: PeerManager | None = None
        self._discovery: Discovery | None = None
        self._stream_send: dict[Location, bool] = {}
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        # Made inside the trio run (by open_pycos): the trio thread running the node
        # and its token are this one's (see _threads.py).
        self._thread_id = get_ident()
        self._token = trio.lowlevel.current_trio_token()

    # -- public -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name (default: its location as text)."""
        return self._name

    @property
    def location(self) -> Location:
        """Where the node's network services are."""
        return self._location

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
        _check_port("udp_port", udp_port, optional=False)
        self._stream_send[loc] = bool(stream_send)
        if self._peers is None or self._discovery is None:
            await trio.lowlevel.checkpoint()
            return -1
        asked = True
        if loc.port == 0 or relay:
            asked = await self._discovery.ping(loc.addr, udp_port, bool(relay))
            if loc.port == 0:
                return 0 if asked else -1
        conn = await self._peers.connect(loc)
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
        with trio.move_on_after(math.inf if timeout is None else timeout):
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
        if self._nondaemon == 0:
            await trio.lowlevel.checkpoint()
            return
        if self._idle is None:
            self._idle = trio.Event()
        await self._idle.wait()

    async def _finish_on_leaving(self) -> None:
        """``finish()`` for the end of the ``async with`` block.  A task that never
        ends keeps the block open forever, silently (under an autojump clock the
        heartbeats keep the clock jumping: a test spins instead of hanging), so
        after a grace period, and again at growing intervals, say who is waited for
        and how to end them."""
        waited = 0.0
        interval = LEAVE_GRACE
        while self._nondaemon:
            with trio.move_on_after(interval):
                await self.finish()
                return
            waited += interval
            running = [t for t in self._tasks.values() if not t._daemon]
            shown = ", ".join(repr(t) for t in running[:_LEAVE_NAMED])
            if len(running) > _LEAVE_NAMED:
                shown += f" and {len(running) - _LEAVE_NAMED} more"
            log.warning(
                "leaving open_pycos of node %r waits for %d non-daemon task(s) still "
                "running after %g s: %s; each must return, be ended with terminate(), "
                "or be marked with set_daemon() so that leaving does not wait for it",
                self._name,
                len(running),
                waited,
                shown,
            )
            interval = min(interval * 2, _LEAVE_WARN_MAX)
        await trio.lowlevel.checkpoint()

    def terminate(self) -> None:
        """Stop the node now: every task is cancelled and the ``async with`` ends."""
        self._closed = True
        self._terminated = True
        if self._root_scope is not None:
            self._root_scope.cancel()

    def statistics(self) -> NodeStatistics:
        """A snapshot of the node's counters."""
        peers = self._peers
        files = peers.file_handler if peers else None
        return NodeStatistics(
            tasks=len(self._tasks),
            daemon_tasks=self._daemons,
            tasks_started=self._task_counter,
            registered_tasks=len(self._registry["task"]),
            registered_channels=len(self._registry["channel"]),
            peers=len(peers.by_id) if peers else 0,
            handshakes_failed=peers.stats.handshakes_failed if peers else 0,
            handshakes_refused_busy=peers.stats.handshakes_refused_busy if peers else 0,
            handshakes_pending=peers.admission.pending if peers else 0,
            messages_refused=self._refused + (peers.stats.messages_refused if peers else 0),
            protocol_errors=peers.stats.protocol_errors if peers else 0,
            files_received=files.stats.received if isinstance(files, FileReceiver) else 0,
            files_refused=files.stats.refused if isinstance(files, FileReceiver) else 0,
            datagrams_received=self._discovery.stats.datagrams_received if self._discovery else 0,
            datagrams_dropped=self._discovery.stats.datagrams_dropped if self._discovery else 0,
        )

    def __repr__(self) -> str:
        return f"<Pycos {self._name!r} at {self._location}>"

    # -- threads ------------------------------------------------------------------

    def _in_node_thread(self, fn: Callable[..., R], /, *args: Any) -> R:
        """``fn(*args)`` here if this is the node's thread, else run there."""
        if self._thread_id == get_ident():
            return fn(*args)
        return self._call_in_loop(fn, *args)

    def _call_in_loop(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` run in the node's trio thread (from another one)."""
        if self._closed:
            raise PycosError(f"node {self._name!r} is not running")
        try:
            return trio.from_thread.run_sync(
                functools.partial(fn, *args, **kwargs), trio_token=self._token
            )
        except trio.RunFinishedError:
            raise PycosError(f"node {self._name!r} is not running") from None

    def _wait_in_loop(self, fn: Callable[..., Awaitable[R]], /, *args: Any) -> R:
        """Block this (non-trio) thread until ``await fn(*args)`` is done in the node."""
        if self._thread_id == get_ident():
            raise PycosError("this blocks its thread: inside a task, await the coroutine")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise PycosError(f"node {self._name!r} is not running") from None

    # -- status -------------------------------------------------------------------

    def _is_here(self, location: Location) -> bool:
        if self._peers is None:
            return location == self._location
        return location in self._peers.locations

    def _status_here(self) -> NodeStatus:
        peers = self._peers
        return NodeStatus(
            name=self._name,
            locations=tuple(peers.locations) if peers else (self._location,),
            tasks=tuple(sorted(self._registry["task"])),
            channels=tuple(sorted(self._registry["channel"])),
            rps=tuple(sorted(self._registry["rps"])),
            peers=tuple(
                PeerInfo(conn.name, conn.location)
                for conn in (peers.by_id.values() if peers else ())
            ),
            statistics=self.statistics(),
            version=__version__,
        )

    # -- tasks (used by Task) -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._task_nursery is None:
            raise PycosError(f"node {self._name!r} is not running")

    def _new_task_id(self) -> int:
        self._task_counter += 1
        return self._task_counter

    def _adopt(self, task: Task) -> None:
        assert self._task_nursery is not None
        self._tasks[task._task_id] = task
        self._nondaemon += 1
        self._task_nursery.start_soon(task._run, name=task._name)

    def _forget(self, task: Task) -> None:
        del self._tasks[task._task_id]
        self._ended[task._task_id] = task
        if len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)
        for name in list(task._registered or ()):
            self._unregister("task", name, task)
        if task._daemon:
            self._daemons -= 1
        else:
            self._count_nondaemon(-1)

    def _daemon_changed(self, daemon: bool) -> None:
        self._daemons += 1 if daemon else -1
        self._count_nondaemon(-1 if daemon else 1)

    def _count_nondaemon(self, change: int) -> None:
        self._nondaemon += change
        if self._nondaemon == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    # -- names (tasks, channels, RPSs share the mechanism) ------------------------

    def _register(self, kind: Kind, name: str, obj: Any) -> int:
        names = self._registry[kind]
        current = names.get(name)
        if current is not None:
            if current is obj:
                return 0
            log.warning("%s name %r is already registered on %s", kind, name, self._name)
            return -1
        names[name] = obj
        if obj._registered is None:  # a task's set is made on its first name
            obj._registered = set()
        obj._registered.add(name)
        self._registry_changed.set()
        self._registry_changed = trio.Event()
        return 0

    def _unregister(self, kind: Kind, name: str, obj: Any) -> int:
        names = self._registry[kind]
        current = names.get(name)
        if current is None or current is not obj:
            return -1
        del names[name]
        if current._registered is not None:
            current._registered.discard(name)
        return 0

    async def _locate(
        self, kind: Kind, name: str, location: Location | None, timeout: float | None
    ) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, not {type(name).__name__}")
        if location is not None and not isinstance(location, Location):
            raise TypeError(f"location must be a Location, not {type(location).__name__}")
        check_timeout(timeout)
        if location is None and timeout is None:
            # As pycos: with no location and no timeout, wait until it appears here
            # or at any peer (peers that appear meanwhile included).
            timeout = math.inf
        if location is not None and location != self._location:
            return await self._remote.locate(kind, name, location, timeout)
        found = self._registry[kind].get(name)
        if found is not None or location is not None:
            await trio.lowlevel.checkpoint()
            return found if found is not None else await self._locate_here(kind, name, timeout)
        # Here or at any peer, whichever answers first.
        async with trio.open_nursery() as nursery:
            answers: list[Any] = []

            async def look(search: Callable[[], Awaitable[Any]]) -> None:
                answer = await search()
                if answer is not None and not answers:
                    answers.append(answer)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(look, lambda: self._locate_here(kind, name, timeout))
            nursery.start_soon(look, lambda: self._remote.locate(kind, name, None, timeout))
        return answers[0] if answers else None

    async def _locate_here(self, kind: Kind, name: str, timeout: float | None) -> Any:
        """The local registration of ``name``, waiting up to ``timeout`` for it."""
        names = self._registry[kind]
        found = names.get(name)
        if found is not None or not timeout:
            await trio.lowlevel.checkpoint()
            return found
        with trio.move_on_after(timeout):
            while found is None:
                await self._registry_changed.wait()
                found = names.get(name)
        return found

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
                found = self._registry["channel"].get(ref.name)
                if found is not None:
                    return found
            return Channel._reference(self, ref)
        if ref.kind == "rps":
            if ref.node_id == self._node_id:
                found = self._registry["rps"].get(ref.name)
                if found is not None:
                    return found
            return RPS._reference(self, ref)
        return ref

    def _spawn_service(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._service_nursery is not None and not self._closed:
            self._service_nursery.start_soon(fn, *args)

    # -- services -----------------------------------------------------------------

    async def _serve_tasks(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._task_nursery = nursery
                task_status.started()
                await self._timer.run()
        finally:
            self._tasks_gone.set()

    async def _serve_network(
        self,
        transport: Transport,
        hosts: list[str],
        tcp_port: int | None,
        limits: Limits,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
        advertised: list[Location] = []
        try:
            ext = _as_list(self.ext_ip_addr)
            for index, host in enumerate(hosts):
                opened = await _listen(transport, host, tcp_port, self.socket_family)
                listeners.extend(opened)
                for listener in opened:
                    addr, port = transport.listener_address(listener)
                    # Behind NAT: peers are told the gateway's address, same port.  A
                    # link-local scope means nothing elsewhere: it is not advertised.
                    public = ext[index] if index < len(ext) else addr.partition("%")[0]
                    advertised.append(Location(str(ipaddress.ip_address(public)), port))
            if not listeners:
                raise PycosError(f"no address of the requested family to serve on in {hosts}")
            self._start_peers(transport, listeners, advertised, limits)
        except BaseException:
            # Nothing serves them yet: close what was opened before the failure.
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            raise
        assert self._peers is not None
        self._discovery = Discovery(
            transport=transport,
            peers=self._peers,
            secret=self._secret,
            udp_port=self.udp_port,
            addresses=[transport.listener_address(lst)[0] for lst in listeners],
            advertised=list(dict.fromkeys(advertised)),
            ipv4_multicast=self.ipv4_udp_multicast,
            listen=self.discover_peers,
            announce_interval=self.announce_interval,
        )
        async with trio.open_nursery() as nursery:
            self._service_nursery = nursery
            await nursery.start(self._peers.serve, listeners)
            await nursery.start(self._discovery.serve)
            log.info(
                "node %r serving at %s", self._name, ", ".join(map(str, self._peers.locations))
            )
            task_status.started()
            await trio.sleep_forever()

    def _start_peers(
        self,
        transport: Transport,
        listeners: list[trio.abc.Listener[trio.abc.Stream]],
        advertised: list[Location],
        limits: Limits,
    ) -> None:
        bound = [Location(*transport.listener_address(lst)) for lst in listeners]
        self._location = advertised[0]
        if self._name_from_location:
            self._name = str(self._location)
        self._peers = PeerManager(
            transport=transport,
            node_id=self._node_id,
            name=self._name,
            secret=self._secret,
            codec=self._codec,
            limits=limits,
            dispatch=self._remote.dispatch,
            is_reference=self._remote.is_reference,
            on_online=self._remote.on_online,
            on_offline=self._remote.on_offline,
            timer=self._timer,
        )
        self._peers.file_handler = FileReceiver(self, limits)
        # Advertised first: the first location is the one peers know us by.
        self._peers.locations = list(dict.fromkeys([*advertised, *bound]))

    async def _close(self) -> None:
        """Leave in order: end the remaining (daemon) tasks, so their exit statuses
        are queued for remote monitors, then say goodbye to every peer."""
        self._closed = True
        if self._terminated or self._task_nursery is None:
            return
        with trio.CancelScope(shield=True):
            self._task_nursery.cancel_scope.cancel()
            limit = self._peers.limits.goodbye_timeout if self._peers else 2.0
            with trio.move_on_after(limit):
                await self._tasks_gone.wait()
            if self._peers is not None:
                await self._peers.goodbye()


_ENDED_KEPT = 4096
#: Seconds (trio time) that leaving ``open_pycos`` waits for non-daemon tasks before
#: it warns; the warning repeats after twice as long each time, up to
#: ``_LEAVE_WARN_MAX``.
LEAVE_GRACE = 10.0
_LEAVE_WARN_MAX = 600.0
#: Tasks named in one such warning (a node may run thousands).
_LEAVE_NAMED = 100


def _mailbox_bound(max_mailbox: int | None) -> int:
    return sys.maxsize if max_mailbox is None else max_mailbox


async def _listen(
    transport: Transport, host: str, tcp_port: int | None, family: int | None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Listeners on ``host`` (only those of ``family``, when given)."""
    if tcp_port is None:
        # The spec's default port if it is free, else any free port.
        try:
            listeners = await transport.open_listeners(host, 9705)
        except OSError:
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


async def _open_listeners(
    transport: Transport, host: str, port: int
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """The transport's listeners; its failure says where, in words (the OSError,
    with its errno, is the cause)."""
    try:
        return await transport.open_listeners(host, port)
    except OSError as exc:
        where = Location(host.partition("%")[0], port)
        raise PycosError(f"cannot listen on {where}: {os_error_reason(exc)}") from exc


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


async def _supervised(
    name: str,
    service: Callable[..., Awaitable[None]],
    *args: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node service; its failure comes out as a ServiceError naming it."""
    try:
        await service(*args, task_status=task_status)
    except Exception as exc:
        raise ServiceError(name, exc) from exc


def _surface(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What leaves ``open_pycos``: the body's own exception as itself, a service
    failure as one ServiceError, interpreter exits first."""
    leaves = exception_leaves(group)
    for kind in (KeyboardInterrupt, SystemExit, ServiceError):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    # Only the block itself can raise anything else: its exception, group or not.
    return group.exceptions[0] if len(group.exceptions) == 1 else group


async def _default_host(family: int | None) -> str:
    """pycos's default node: this host's address (see ``_hostaddr``); a host whose
    address cannot be found is a clear error rather than a guess."""
    try:
        return await default_host(family)
    except OSError as exc:
        raise PycosError(f"cannot find this host's address ({exc}); pass node=...") from exc


def _check_ext_ip_addr(ext_ip_addr: object, hosts: int) -> None:
    if ext_ip_addr is None:
        return
    addrs = [ext_ip_addr] if isinstance(ext_ip_addr, str) else ext_ip_addr
    if not isinstance(addrs, list | tuple) or not all(isinstance(a, str) for a in addrs):
        raise TypeError(f"ext_ip_addr must be an IP address or a list of them, not {ext_ip_addr!r}")
    if len(addrs) > hosts:
        raise ValueError(f"ext_ip_addr has {len(addrs)} addresses for {hosts} node address(es)")
    for addr in addrs:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"ext_ip_addr {addr!r} is not an IP address") from None


def _check_port(what: str, port: object, *, optional: bool) -> None:
    if port is None and optional:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what} must be a port number 0..65535, not {port!r}")


@asynccontextmanager
async def open_pycos(
    udp_port: int = 9705,
    tcp_port: int | None = None,
    node: str | Sequence[str] | None = None,
    ext_ip_addr: str | Sequence[str] | None = None,
    socket_family: int | None = None,
    ipv4_udp_multicast: bool = False,
    name: str | None = None,
    discover_peers: bool = True,
    secret: str = "",
    certfile: str | None = None,
    keyfile: str | None = None,
    dest_path: str | os.PathLike[str] | None = None,
    max_file_size: int | None = None,
    *,
    dest_path_prefix: str | os.PathLike[str] | None = None,
    transport: Transport | None = None,
    limits: Limits | None = None,
    peer_timeout: float | None = None,
    node_id: bytes | None = None,
    cafile: str | os.PathLike[str] | None = None,
    announce_interval: float | None = 30.0,
    encode_local: bool = False,
) -> AsyncIterator[Pycos]:
    """Run a node for the duration of the block; yields its ``Pycos``.

    Arguments are the spec's ``Pycos`` constructor's (``dest_path_prefix`` is accepted
    as an alias of ``dest_path``).  Leaving the block normally waits for the node's
    non-daemon tasks (a warning on the ``triopycos`` logger names those still running
    after 10 s of trio time, and again at growing intervals), then cancels its daemon
    tasks; an exception in the block cancels every task and comes out as itself;
    ``pycos.terminate()`` cancels everything at once.

    Keyword-only extras: ``limits`` (a ``Limits``), ``peer_timeout`` (seconds of
    silence after which a peer is taken for gone; default 15, heartbeats go out every
    third of it on idle connections) and ``transport`` (TCP by default; the virtual
    network of ``triopycos.testing`` is another).  ``node_id`` (16 bytes) replaces
    the random incarnation id; the virtual network uses it so runs are reproducible.
    ``certfile`` (with ``keyfile`` if the key is in its own file, and ``cafile``, the
    certificates to trust; default: ``certfile`` itself) puts every peer connection
    in TLS that authenticates both sides.  ``announce_interval``: with discovery, the
    node announces itself when it starts, again after 1, 2, 4... seconds and then
    every ``announce_interval`` seconds (None or 0: only once).

    Messages between tasks of one node are handed over by reference, never encoded,
    so a message that cannot cross the wire (a function, an open file, a lock) works
    locally and fails only once the program is distributed.  ``encode_local=True``
    (for tests) sends every local message, and the arguments of local RPS calls,
    through the codec as a peer would get them: what cannot travel raises
    ``TypeError``/``ValueError`` at the send, and receivers get copies.
    """
    _check_port("udp_port", udp_port, optional=False)
    _check_port("tcp_port", tcp_port, optional=True)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, not {name!r}")
    if name is not None and len(name) > MAX_NAME:
        # Names travel in handshakes and discovery datagrams, which are bounded.
        raise ValueError(f"name must be at most {MAX_NAME} characters, not {len(name)}")
    if not isinstance(secret, str):
        raise TypeError(f"secret must be a str, not {type(secret).__name__}")
    if max_file_size is not None and (
        isinstance(max_file_size, bool) or not isinstance(max_file_size, int) or max_file_size < 0
    ):
        raise ValueError(f"max_file_size must be None or an int >= 0, not {max_file_size!r}")
    if dest_path is not None and dest_path_prefix is not None:
        raise TypeError("give dest_path or its alias dest_path_prefix, not both")
    chosen = dest_path if dest_path is not None else dest_path_prefix
    folder = os.fspath(chosen) if chosen is not None else default_dest_path()
    if socket_family not in (None, socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"socket_family must be None, AF_INET or AF_INET6, not {socket_family!r}")
    interval = announce_interval_ok(announce_interval)
    if node is None:
        hosts = [await _default_host(socket_family)]
    elif isinstance(node, str):
        hosts = [node]
    else:
        hosts = list(node)
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise TypeError(f"node must be a host, an address or a list of them, not {node!r}")
        if len(hosts) > MAX_LOCATIONS // 2:
            raise ValueError(f"node may list at most {MAX_LOCATIONS // 2} addresses")
    _check_ext_ip_addr(ext_ip_addr, len(hosts))
    limits = limits if limits is not None else Limits()
    if peer_timeout is not None:
        check_timeout(peer_timeout)
        if peer_timeout <= 0:
            raise ValueError(f"peer_timeout must be > 0, not {peer_timeout!r}")
        limits = dataclasses.replace(limits, peer_timeout=peer_timeout)
    if transport is None:
        transport = TCPTransport(connect_timeout=limits.connect_timeout)
    if certfile is not None:
        # Every peer connection is TLS, authenticated on both sides.
        transport = TLSTransport(transport, certfile, keyfile, cafile)
    elif keyfile is not None or cafile is not None:
        raise TypeError("keyfile and cafile need a certfile")
    if node_id is not None and (type(node_id) is not bytes or len(node_id) != 16):
        raise ValueError("node_id must be 16 bytes")
    if chosen is None:
        # A few system calls, made here in the trio thread: a worker thread would
        # let an autojump clock jump meanwhile, and virtual-network runs would no
        # longer repeat.
        make_private(folder)
    pycos = Pycos(
        node_id=node_id,
        name=name,
        location=Location(hosts[0], tcp_port or 0),
        udp_port=udp_port,
        node=node,
        ext_ip_addr=ext_ip_addr,
        socket_family=socket_family,
        ipv4_udp_multicast=bool(ipv4_udp_multicast),
        discover_peers=bool(discover_peers),
        secret=secret,
        certfile=certfile,
        keyfile=keyfile,
        dest_path=folder,
        max_file_size=max_file_size or None,
        announce_interval=interval,
        encode_local=bool(encode_local),
    )
    pycos._max_mailbox = _mailbox_bound(limits.max_mailbox)
    try:
        async with trio.open_nursery() as root:
            pycos._root_scope = root.cancel_scope
            await root.start(_supervised, "tasks", pycos._serve_tasks)
            await root.start(
                _supervised, "network", pycos._serve_network, transport, hosts, tcp_port, limits
            )
            token = _current_node.set(pycos)
            try:
                yield pycos
                await pycos._finish_on_leaving()
            finally:
                _current_node.reset(token)
                await pycos._close()
                root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        surfaced = _surface(group)
        # Without the group as context, but with the exception's own cause (a
        # ServiceError's is the service's failure).
        raise surfaced from surfaced.__cause__
