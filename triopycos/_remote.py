"""Remote operations: what a node does for references to other nodes' tasks,
channels and RPSs, and for peers coming and going.  How it serves its peers'
messages is the other half of ``RemoteOps``, in ``_serve.py``.

Incarnations: a reference names its node by the node id chosen at start, not only by
address. A request goes only to a connection whose peer has that id, so a reference
to a task of a peer that restarted is stale: ``send``/``deliver`` to it fail and can
never reach the new incarnation's tasks.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import trio

from ._channel import Channel
from ._errors import PeerLost
from ._location import Location
from ._node_status import NodeStatus, status_from_wire
from ._rps import RPS
from ._serve import RESULTS_KEPT, Pushed, ServingPeers
from ._status import MonitorStatus, PeerStatus
from ._task import Task
from .protocol.codec import Ref, register_type
from .protocol.messages import (
    ChannelDeliver,
    ChannelSend,
    ChannelSubscribe,
    ChannelUnsubscribe,
    Echo,
    Locate,
    RpsCall,
    StatusRequest,
    TaskDeliver,
    TaskFinish,
    TaskMonitor,
    TaskSend,
    TaskTerminate,
)
from .services.peer import PeerConnection
from .services.timer import Parked

if TYPE_CHECKING:
    from ._node import Kind as RegistryKind
    from ._node import Pycos

__all__ = ["RemoteOps"]

log = logging.getLogger("triopycos.remote")


class RemoteOps(ServingPeers):
    """The node's half of every remote operation, and (``ServingPeers``) of its
    peers' requests."""

    def __init__(self, node: Pycos) -> None:
        self.node = node
        # Local tasks monitoring tasks on peers: peer id -> task id -> monitors, so a
        # lost peer can tell them at once.
        self._watches: dict[bytes, dict[int, list[Task]]] = {}
        # Names of the watched tasks, so the PeerLost status of one still names it.
        self._watched_names: dict[tuple[bytes, int], str] = {}
        self._status_tasks: list[Task] = []
        # Results of tasks started by our RPS calls, pushed by the serving node when
        # each task ends: finish() needs no second round trip and cannot lose a
        # result however many tasks ended meanwhile (bounded: oldest fall off).
        self._results: OrderedDict[tuple[bytes, int], Pushed] = OrderedDict()
        # Messages for nodes we are connecting to on demand, in the order sent.
        self._unreached: dict[bytes, list[TaskSend]] = {}
        self._flushed: dict[bytes, trio.Event] = {}  # set once a node's queue went out
        # Monitors already told PeerLost for a task: if the node comes back and the
        # real status arrives too, it is dropped, so each monitor hears exactly once.
        self._told_lost: OrderedDict[tuple[bytes, int], list[Task]] = OrderedDict()
        # Incarnations whose connection was lost: messages to them fail at once
        # instead of each trying to reconnect (re-peering is the manager's job).
        self._lost: set[bytes] = set()

    # -- reaching the owner of a reference ----------------------------------------

    def _connected(self, node_id: bytes) -> PeerConnection | None:
        peers = self.node._peers
        return None if peers is None else peers.by_id.get(node_id)

    async def _reach(
        self, node_id: bytes, location: Location, timeout: float | None
    ) -> PeerConnection | None:
        """The connection to incarnation ``node_id``, connecting to ``location`` if we
        are not peered with it yet (references travel to third nodes)."""
        conn = self._connected(node_id)
        if conn is not None or self.node._peers is None:
            # No extra checkpoint: the request that follows is one (every pass costs
            # a scheduler round on the message path).
            return conn
        with trio.move_on_after(math.inf if timeout is None else timeout):
            flushed = self._flushed.get(node_id)
            if flushed is not None:
                # Sends queued for this node go first (FIFO per node pair).
                await flushed.wait()
                conn = self._connected(node_id)
            else:
                conn = await self.node._peers.connect(location)
        if conn is not None and conn.node_id == node_id:
            return conn
        return None

    def _stale(self, node_id: bytes, location: Location) -> bool:
        peers = self.node._peers
        if peers is None or node_id in self._lost:
            return True
        current = peers.find(location)
        return current is not None and current.node_id != node_id

    # -- tasks --------------------------------------------------------------------

    def task_send(self, task: Task, message: Any) -> int:
        conn = self._connected(task._node_id)
        if conn is not None:
            return conn.send(TaskSend(task._task_id, message))
        if self._stale(task._node_id, task._location):
            return -1
        # Not peered with its node yet: check now that it can be encoded (so the caller
        # gets the TypeError), then queue it; one background connect per node sends
        # the queue in order once connected.
        self.node._codec.encode(message)
        queue = self._unreached.get(task._node_id)
        if queue is None:
            queue = self._unreached[task._node_id] = []
            self._flushed[task._node_id] = trio.Event()
            self.node._spawn_service(self._send_when_reached, task._node_id, task._location)
        queue.append(TaskSend(task._task_id, message))
        return 0

    async def _send_when_reached(self, node_id: bytes, location: Location) -> None:
        conn: PeerConnection | None = None
        try:
            assert self.node._peers is not None
            conn = await self.node._peers.connect(location)
            if conn is not None and conn.node_id != node_id:
                conn = None
        finally:
            queue = self._unreached.pop(node_id, [])
            if conn is None:
                log.warning("%d message(s) to %s dropped: cannot reach it", len(queue), location)
            else:
                for message in queue:
                    conn.send(message)
            self._flushed.pop(node_id).set()

    async def task_deliver(self, task: Task, message: Any, timeout: float | None) -> int:
        conn = await self._reach(task._node_id, task._location, timeout)
        if conn is None:
            return 0
        result = await conn.request(TaskDeliver(task._task_id, message), timeout=timeout)
        return 1 if type(result) is int and result == 1 else 0

    def task_terminate(self, task: Task) -> int:
        conn = self._connected(task._node_id)
        if conn is None:
            return -1
        return conn.send(TaskTerminate(task._task_id))

    async def task_finish(self, task: Task, timeout: float | None) -> Any:
        key = (task._node_id, task._task_id)
        pushed = self._results.get(key)
        if pushed is not None:
            # A task started by our RPS call: its result is (or will be) pushed here,
            # no request needed.
            if not pushed.done:
                waiter = Parked(False)
                pushed.waiters.append(waiter)
                try:
                    await waiter.wait(self.node._timer, timeout)
                finally:
                    if waiter.value is not True:  # timed out or cancelled
                        pushed.waiters.remove(waiter)
            else:
                await trio.lowlevel.checkpoint()
            return pushed.value
        conn = await self._reach(task._node_id, task._location, timeout)
        if conn is None:
            return None
        return await conn.request(TaskFinish(task._task_id, timeout), timeout=timeout)

    def task_ended(self, task: Task) -> bool:
        """Whether a task started by one of our RPS calls is known to have ended."""
        pushed = self._results.get((task._node_id, task._task_id))
        return pushed is not None and pushed.done

    async def task_monitor(self, monitor: Task, observe: Task) -> int:
        conn = await self._reach(observe._node_id, observe._location, None)
        if conn is None:
            return -1
        # Watch before asking: the status of a task that has already ended can come
        # back ahead of the reply, and must find (and end) the watch.
        watching = monitor._local and self._watch(
            conn.node_id, observe._task_id, monitor, observe._name
        )
        told = self._told_lost.get((conn.node_id, observe._task_id))
        if told is not None and monitor in told:
            told.remove(monitor)  # monitoring again: this monitor wants the real status
        result = await conn.request(TaskMonitor(observe._task_id, monitor))
        if type(result) is not int or result != 0:
            if watching:
                self._unwatch(conn.node_id, observe, monitor)
            return -1
        return 0

    def _watch(self, node_id: bytes, task_id: int, monitor: Task, name: str = "?") -> bool:
        if name != "?":
            self._watched_names[(node_id, task_id)] = name
        watchers = self._watches.setdefault(node_id, {}).setdefault(task_id, [])
        if monitor in watchers:
            return False
        watchers.append(monitor)
        return True

    def task_is_alive(self, task: Task) -> bool:
        return self._connected(task._node_id) is not None

    # -- channels -----------------------------------------------------------------

    def channel_send(self, channel: Channel, message: Any, visited: tuple[bytes, ...] = ()) -> int:
        conn = self._connected(channel._node_id)
        if conn is None:
            return -1
        # A message forwarded by our channels takes its path along.
        return conn.send(ChannelSend(channel._name, message, visited))

    async def channel_deliver(
        self,
        channel: Channel,
        message: Any,
        timeout: float | None,
        n: int,
        visited: tuple[bytes, ...] = (),
    ) -> int:
        conn = await self._reach(channel._node_id, channel._location, timeout)
        if conn is None:
            return 0
        request = ChannelDeliver(channel._name, message, timeout, n, visited)
        result = await conn.request(request, timeout=timeout)
        return result if type(result) is int else 0

    async def channel_subscribe(
        self,
        channel: Channel,
        subscriber: Task | Channel,
        timeout: float | None,
        *,
        subscribe: bool,
    ) -> int:
        conn = await self._reach(channel._node_id, channel._location, timeout)
        if conn is None:
            return -1
        kind = ChannelSubscribe if subscribe else ChannelUnsubscribe
        result = await conn.request(kind(channel._name, subscriber, timeout), timeout=timeout)
        return 0 if type(result) is int and result == 0 else -1

    # -- RPS ----------------------------------------------------------------------

    async def rps_call(
        self, rps: RPS, args: tuple[Any, ...], kwargs: dict[str, Any], monitors: list[Task]
    ) -> Any:
        conn = await self._reach(rps._node_id, rps._location, None)
        if conn is None:
            return None
        node_id = conn.node_id
        watchers = [m for m in monitors if m._local]

        def on_reply(result: Any) -> None:
            # Called as the reply is read, before anything the new task sends (its
            # status, its pushed result) is dispatched: the watches that on_offline
            # tells PeerLost exist before the task can end or its node be lost.
            if isinstance(result, Task) and result._node_id == node_id:
                for monitor in watchers:
                    self._watch(node_id, result._task_id, monitor)
                # Its result will be pushed here (finish() needs no request).
                self._results.setdefault((node_id, result._task_id), Pushed())
                while len(self._results) > RESULTS_KEPT:
                    self._results.popitem(last=False)

        return await conn.request(
            RpsCall(rps._name, list(args), kwargs, monitors), on_reply=on_reply
        )

    # -- asking a node about itself -----------------------------------------------

    async def _connection_to(
        self, location: Location, timeout: float | None
    ) -> PeerConnection | None:
        """The connection to the node at ``location``, connecting (within
        ``timeout``) if we are not peered with it."""
        peers = self.node._peers
        if peers is None:
            await trio.lowlevel.checkpoint()
            return None
        conn = peers.find(location)
        if conn is None:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                conn = await peers.connect(location)
        return conn

    async def node_status(self, location: Location, timeout: float | None) -> NodeStatus | None:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            conn = await self._connection_to(location, None)
            if conn is None:
                return None
            answer = await conn.request(StatusRequest())
            status = status_from_wire(answer)
            if status is None and answer is not None:
                log.warning("malformed status from %r dropped", conn)
            return status
        return None

    async def round_trip(self, location: Location, timeout: float | None) -> float | None:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            conn = await self._connection_to(location, None)
            if conn is None:
                return None
            # Connecting is not timed: only one request and its reply.
            start = trio.current_time()
            if await conn.request(Echo()) is True:
                return trio.current_time() - start
        return None

    # -- locating -----------------------------------------------------------------

    async def locate(
        self, kind: RegistryKind, name: str, location: Location | None, timeout: float | None
    ) -> Any:
        peers = self.node._peers
        if peers is None:
            await trio.lowlevel.checkpoint()
            return None
        if location is not None:
            conn = await self._connection_to(location, timeout)
            if conn is None:
                return None
            return await conn.request(Locate(kind, name, timeout), timeout=timeout)
        # Ask every peer at once, and every peer that appears before the timeout.
        found: list[Any] = []
        deadline = trio.current_time() + (0 if timeout is None else timeout)
        async with trio.open_nursery() as nursery:

            async def ask(conn: PeerConnection) -> None:
                while True:
                    # The peer waits for the name at most one round: once we stop
                    # looking (found elsewhere), it is not left waiting for long.
                    left = max(0.0, deadline - trio.current_time()) if timeout else None
                    wait = None if left is None else min(left, _LOCATE_ROUND)
                    answer = await conn.request(Locate(kind, name, wait), timeout=wait)
                    if answer is not None:
                        if not found:
                            found.append(answer)
                            nursery.cancel_scope.cancel()
                        return
                    if wait is None or wait == left or conn.closed:
                        return

            asked: set[PeerConnection] = set()

            async def ask_new_peers() -> None:
                while True:
                    changed = peers.changed
                    for conn in list(peers.by_id.values()):
                        if conn not in asked:
                            asked.add(conn)
                            nursery.start_soon(ask, conn)
                    if not timeout:
                        return
                    await changed.wait()

            if timeout:
                nursery.cancel_scope.deadline = deadline
            nursery.start_soon(ask_new_peers)
        return found[0] if found else None

    # -- peers coming and going ---------------------------------------------------

    def set_status_task(self, task: Task | None) -> None:
        if task is None:
            self._status_tasks.clear()
            return
        if not isinstance(task, Task):
            raise TypeError(f"peer_status() needs a Task or None, not {type(task).__name__}")
        if task not in self._status_tasks:
            self._status_tasks.append(task)
        peers = self.node._peers
        if peers is not None:
            for conn in peers.by_id.values():
                task._send(PeerStatus(conn.location, conn.name, PeerStatus.Online))

    def _tell_status(self, conn: PeerConnection, status: int) -> None:
        note = PeerStatus(conn.location, conn.name, status)
        # A task that refused the note only because its mailbox is full stays.
        self._status_tasks = [
            t for t in self._status_tasks if t._send(note) == 0 or (t._local and t._alive)
        ]

    def on_online(self, conn: PeerConnection) -> None:
        log.info("peer %r online", conn)
        self._lost.discard(conn.node_id)
        self._tell_status(conn, PeerStatus.Online)

    def on_offline(self, conn: PeerConnection) -> None:
        log.info("peer %r offline", conn)
        self._lost.add(conn.node_id)
        for (node_id, _), pushed in self._results.items():
            if node_id == conn.node_id and not pushed.done:
                pushed.finish(None)  # no result will come: finish() gives None
        # Subscribers on the lost node leave every channel here, so no channel keeps
        # trying to reach them.
        for channel in list(self.node._channels):
            channel._drop_node(conn.node_id)
        watched = self._watches.pop(conn.node_id, {})
        for task_id, monitors in watched.items():
            name = self._watched_names.pop((conn.node_id, task_id), "?")
            ref = Ref("task", conn.node_id, task_id, name, conn.location)
            lost = Task._reference(self.node, ref)
            reason = f"peer {conn.name!r} at {conn.location} was lost"
            for monitor in monitors:
                monitor._send(MonitorStatus(lost, PeerLost, reason))
            self._told_lost[(conn.node_id, task_id)] = monitors
        while len(self._told_lost) > _TOLD_LOST_KEPT:
            self._told_lost.popitem(last=False)
        self._tell_status(conn, PeerStatus.Offline)


_LOCATE_ROUND = 30.0  # seconds a peer waits for a name per request of a long locate
_TOLD_LOST_KEPT = 4096


# PeerLost travels inside MonitorStatus: let it arrive as itself on every node.
register_type(PeerLost, "triopycos.PeerLost")
