"""Remote operations: what a node does for references to other nodes' tasks and
channels, and how it serves its peers' requests (the dispatcher).

Incarnations: a reference names its node by the node id chosen at start, not only by
address. A request goes only to a connection whose peer has that id, so a reference
to a task of a peer that restarted is stale: ``send``/``deliver`` to it fail and can
never reach the new incarnation's tasks.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._channel import MAX_HOPS, Channel
from ._errors import PeerLost, PycosError
from ._location import Location
from ._node_status import NodeStatus, status_from_wire, status_to_wire
from ._rps import RPS
from ._status import MonitorStatus, PeerStatus
from ._task import Task
from .protocol.codec import Ref, register_type
from .protocol.messages import FAILURE_VALUES, REQUEST_KINDS, Kind
from .protocol.printable import describe, escape
from .services.peer import PeerConnection
from .services.timer import Parked

if TYPE_CHECKING:
    from ._node import Kind as RegistryKind
    from ._node import Pycos

__all__ = ["RemoteOps"]

log = logging.getLogger("triopycos.remote")

_TASK_SEND = Kind.TASK_SEND
_REPLY = Kind.REPLY


class RemoteOps:
    """The node's half of every remote operation."""

    def __init__(self, node: Pycos) -> None:
        self.node = node
        # Local tasks monitoring tasks on peers: peer id -> task id -> monitors, so a
        # lost peer can tell them at once.
        self._watches: dict[bytes, dict[int, list[Task]]] = {}
        # Names of the watched tasks, so the PeerLost status of one still names it.
        self._watched_names: dict[tuple[bytes, int], str] = {}
        self._status_tasks: list[Task] = []
        self._handlers: dict[int, Callable[[PeerConnection, list[Any]], None]] = {
            Kind.TASK_DELIVER: self._on_task_deliver,
            Kind.TASK_TERMINATE: self._on_task_terminate,
            Kind.TASK_MONITOR: self._on_task_monitor,
            Kind.TASK_FINISH: self._on_task_finish,
            Kind.TASK_ALIVE: self._on_task_alive,
            Kind.LOCATE: self._on_locate,
            Kind.CHANNEL_SEND: self._on_channel_send,
            Kind.CHANNEL_DELIVER: self._on_channel_deliver,
            Kind.CHANNEL_SUBSCRIBE: self._on_channel_subscribe,
            Kind.CHANNEL_UNSUB: self._on_channel_unsubscribe,
            Kind.PING: self._on_ping,
            Kind.PONG: self._on_pong,
            Kind.BYE: self._on_bye,
            Kind.RPS_CALL: self._on_rps_call,
            Kind.TASK_RESULT: self._on_task_result,
            Kind.NODE_STATUS: self._on_node_status,
            Kind.ECHO: self._on_echo,
        }
        # Results of tasks started by our RPS calls, pushed by the serving node when
        # each task ends: finish() needs no second round trip and cannot lose a
        # result however many tasks ended meanwhile (bounded: oldest fall off).
        self._results: OrderedDict[tuple[bytes, int], _Pushed] = OrderedDict()
        # Messages for nodes we are connecting to on demand, in the order sent.
        self._unreached: dict[bytes, list[list[Any]]] = {}
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
            return conn.send([_TASK_SEND, task._task_id, message])
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
        queue.append([_TASK_SEND, task._task_id, message])
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
        result = await conn.request(Kind.TASK_DELIVER, task._task_id, message, timeout=timeout)
        return 1 if type(result) is int and result == 1 else 0

    def task_terminate(self, task: Task) -> int:
        conn = self._connected(task._node_id)
        if conn is None:
            return -1
        return conn.send([Kind.TASK_TERMINATE, task._task_id])

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
        return await conn.request(Kind.TASK_FINISH, task._task_id, timeout, timeout=timeout)

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
        result = await conn.request(Kind.TASK_MONITOR, observe._task_id, monitor)
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
        if visited:  # forwarded by our channels: the path goes with it
            return conn.send([Kind.CHANNEL_SEND, channel._name, message, list(visited)])
        return conn.send([Kind.CHANNEL_SEND, channel._name, message])

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
        fields: list[Any] = [channel._name, message, timeout, n]
        if visited:
            fields.append(list(visited))
        result = await conn.request(Kind.CHANNEL_DELIVER, *fields, timeout=timeout)
        return result if type(result) is int else 0

    async def channel_subscribe(
        self, channel: Channel, subscriber: Task | Channel, timeout: float | None, kind: int
    ) -> int:
        conn = await self._reach(channel._node_id, channel._location, timeout)
        if conn is None:
            return -1
        result = await conn.request(kind, channel._name, subscriber, timeout, timeout=timeout)
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
                self._results.setdefault((node_id, result._task_id), _Pushed())
                while len(self._results) > _RESULTS_KEPT:
                    self._results.popitem(last=False)

        return await conn.request(
            Kind.RPS_CALL, rps._name, list(args), kwargs, monitors, on_reply=on_reply
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
            answer = await conn.request(Kind.NODE_STATUS)
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
            if await conn.request(Kind.ECHO) is True:
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
            return await conn.request(Kind.LOCATE, kind, name, timeout, timeout=timeout)
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
                    answer = await conn.request(Kind.LOCATE, kind, name, wait, timeout=wait)
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

    # -- serving peers: the dispatcher --------------------------------------------

    def dispatch(self, conn: PeerConnection, message: list[Any]) -> None:
        """Handle one message from ``conn``; never raises, and every request gets a
        reply.  Two kinds of failure, told apart:

        * the peer's message is malformed (a handler raised ``_Malformed``): logged
          once per connection and kind, with the peer's values only as ``describe``
          shows them; a request is answered with its kind's failure value;
        * anything else a handler raises is a bug of this node: logged as an error
          with its traceback, every time; a request is answered with its failure
          value too, and the session and the node go on serving.
        """
        kind = message[0]
        try:
            if type(kind) is not int:
                raise _Malformed(f"its kind is {describe(kind)}")
            if kind == _TASK_SEND:
                self._on_task_send(conn, message)
            elif kind == _REPLY:
                if len(message) != 3 or type(message[1]) is not int:
                    raise _Malformed("a reply is a request id and a value")
                conn.resolve(message[1], message[2])
            else:
                handler = self._handlers.get(kind)
                if handler is None:
                    raise _Malformed("unknown kind")
                handler(conn, message)
        except _Malformed as exc:
            name = _kind_name(kind)
            conn.log_once(f"malformed {name}"[:40], "malformed %s message dropped: %s", name, exc)
            self._fail(conn, kind, message)
        except Exception:
            log.exception(
                "%r: handling a %s message failed (a bug of this node, not the peer's); "
                "the node goes on serving",
                conn,
                _kind_name(kind),
            )
            self._fail(conn, kind, message)

    @staticmethod
    def _fail(conn: PeerConnection, kind: object, message: list[Any]) -> None:
        """Answer a request that could not be served with its kind's failure value."""
        if type(kind) is int and kind in REQUEST_KINDS and len(message) > 1:
            rid = message[1]
            if type(rid) is int:
                conn.reply(rid, FAILURE_VALUES[kind])

    def _later(
        self, conn: PeerConnection, kind: int, rid: int, handler: Callable[[], Awaitable[None]]
    ) -> bool:
        """Serve a request that must wait, in a task of the connection (it ends with
        the connection).  At most ``Limits.max_parked_requests`` of them per peer: one
        more is answered at once with its failure value and counted in
        ``messages_refused``.  A handler that raises is a bug of this node: logged
        with its traceback, and the request still gets its failure value.  False if
        it was not started (refused, or the connection is closed)."""
        peers = self.node._peers
        if peers is None or conn.closed:
            return False
        if conn.parked >= peers.limits.max_parked_requests:
            peers.stats.messages_refused += 1
            conn.log_once(
                "parked",
                "%d requests of this peer are waiting here (Limits.max_parked_requests): "
                "more are refused",
                conn.parked,
            )
            conn.reply(rid, FAILURE_VALUES[kind])
            return False
        conn.parked += 1

        async def serve() -> None:
            try:
                await handler()
            except Exception:
                log.exception(
                    "%r: serving a %s request failed (a bug of this node, not the peer's)",
                    conn,
                    _kind_name(kind),
                )
                conn.reply(rid, FAILURE_VALUES[kind])
            finally:
                conn.parked -= 1

        conn.start_soon(serve)
        return True

    def _local_task(self, task_id: object) -> Task | None:
        ident = _task_id(task_id)
        return self.node._tasks.get(ident) or self.node._ended.get(ident)

    def _on_task_send(self, conn: PeerConnection, message: list[Any]) -> None:
        # The hot path of remote messages: a bad shape or id is caught, not checked.
        try:
            _, task_id, payload = message
            task = self.node._tasks.get(task_id)
        except (ValueError, TypeError):
            raise _Malformed("a task message is a task id (an int) and a message") from None
        if task is None:
            if type(task_id) is not int:
                raise _Malformed(f"task id is {describe(task_id)}")
            ended = self.node._ended.get(task_id)
            if ended is not None and type(payload) is MonitorStatus:
                if isinstance(payload.info, Task):
                    self._unwatch(conn.node_id, payload.info, ended)  # monitor gone
                return
            conn.log_once("no-task", "message for unknown task id %s dropped", _id_text(task_id))
            return
        if type(payload) is MonitorStatus and isinstance(payload.info, Task):
            told = self._told_lost.get((conn.node_id, payload.info._task_id))
            if told is not None and task in told:
                told.remove(task)  # it already heard PeerLost for this task
                return
            self._unwatch(conn.node_id, payload.info, task)
        task._send(payload)

    def _unwatch(self, node_id: bytes, observed: Task, monitor: Task) -> None:
        by_task = self._watches.get(node_id)
        if by_task is not None:
            monitors = by_task.get(observed._task_id)
            if monitors is not None and monitor in monitors:
                monitors.remove(monitor)
                if not monitors:
                    del by_task[observed._task_id]
                    self._watched_names.pop((node_id, observed._task_id), None)

    def _on_task_deliver(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, task_id, payload = _request(message, 4)
        task = self.node._tasks.get(_task_id(task_id))
        conn.reply(rid, 1 if task is not None and task._send(payload) == 0 else 0)

    def _on_task_terminate(self, conn: PeerConnection, message: list[Any]) -> None:
        _, task_id = _fields(message, 2)
        task = self.node._tasks.get(_task_id(task_id))
        if task is not None:
            task.terminate()

    def _on_task_monitor(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, task_id, monitor = _request(message, 4)
        if not isinstance(monitor, Task):
            raise _Malformed(f"the monitor is {describe(monitor)}")
        task = self._local_task(task_id)
        conn.reply(rid, -1 if task is None else task._add_monitor(monitor))

    def _on_task_finish(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, task_id, timeout = _request(message, 4)
        wait = _wire_timeout(timeout)
        task = self._local_task(task_id)
        if task is None:
            conn.reply(rid, None)
            return
        if not task._alive or wait == 0:
            conn.reply(rid, None if task._alive else task._value)
            return
        replied = False
        parked = trio.CancelScope()

        def on_end() -> None:
            # At the very moment of the end: the reply is queued ahead of anything
            # the node sends later (a goodbye included).
            nonlocal replied
            replied = True
            conn.reply(rid, task._value)
            parked.cancel()

        async def wait_for_end() -> None:
            try:
                with parked:
                    await trio.sleep(math.inf if wait is None else wait)
                if not replied:
                    conn.reply(rid, None)  # timed out
            finally:
                task._forget_when_done(on_end)

        if self._later(conn, Kind.TASK_FINISH, rid, wait_for_end):
            task._when_done(on_end)

    def _on_task_alive(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, task_id = _request(message, 3)
        conn.reply(rid, self.node._tasks.get(_task_id(task_id)) is not None)

    def _on_locate(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, kind, name, timeout = _request(message, 5)
        if kind not in ("task", "channel", "rps") or type(name) is not str:
            raise _Malformed(f"cannot locate {describe(kind)} {describe(name)}")
        timeout = _wire_timeout(timeout)
        found = self.node._registry[kind].get(name)
        if found is not None or not timeout:
            conn.reply(rid, found)
            return

        async def wait_and_reply() -> None:
            conn.reply(rid, await self.node._locate_here(kind, name, timeout))

        self._later(conn, Kind.LOCATE, rid, wait_and_reply)

    def _channel(self, name: object) -> Channel | None:
        if type(name) is not str:
            raise _Malformed(f"channel name is {describe(name)}")
        found = self.node._registry["channel"].get(name)
        return found if isinstance(found, Channel) else None

    def _on_channel_send(self, conn: PeerConnection, message: list[Any]) -> None:
        if len(message) not in (3, 4):
            raise _Malformed("a channel message is a name, a message and its path")
        channel = self._channel(message[1])
        visited = _visited(message[3]) if len(message) == 4 else ()
        if channel is None:
            conn.log_once(
                "no-channel", "message for unknown channel %s dropped", describe(message[1])
            )
        else:
            channel._forward(message[2], visited)

    def _on_channel_deliver(self, conn: PeerConnection, message: list[Any]) -> None:
        if len(message) not in (6, 7):
            raise _Malformed("a channel delivery has 5 or 6 fields")
        _, rid, name, payload, timeout, n = _request(message[:6], 6)
        visited = _visited(message[6]) if len(message) == 7 else ()
        wait = _wire_timeout(timeout)
        if type(n) is not int or n < 0:
            raise _Malformed(f"n is {describe(n)}")
        channel = self._channel(name)
        if channel is None:
            conn.reply(rid, 0)
            return

        async def deliver_and_reply() -> None:
            conn.reply(rid, await channel._deliver(payload, wait, n, visited))

        self._later(conn, Kind.CHANNEL_DELIVER, rid, deliver_and_reply)

    def _on_channel_subscribe(self, conn: PeerConnection, message: list[Any]) -> None:
        self._subscription(conn, message, Kind.CHANNEL_SUBSCRIBE)

    def _on_channel_unsubscribe(self, conn: PeerConnection, message: list[Any]) -> None:
        self._subscription(conn, message, Kind.CHANNEL_UNSUB)

    def _subscription(self, conn: PeerConnection, message: list[Any], kind: int) -> None:
        _, rid, name, subscriber, timeout = _request(message, 5)
        wait = _wire_timeout(timeout)
        if not isinstance(subscriber, (Task, Channel)):
            raise _Malformed(f"the subscriber is {describe(subscriber)}")
        channel = self._channel(name)
        if channel is None:
            conn.reply(rid, -1)
            return
        target = channel

        async def act_and_reply() -> None:
            if kind == Kind.CHANNEL_SUBSCRIBE:
                conn.reply(rid, await target.subscribe(subscriber, wait))
            else:
                conn.reply(rid, await target.unsubscribe(subscriber, wait))

        self._later(conn, kind, rid, act_and_reply)

    def _on_ping(self, conn: PeerConnection, message: list[Any]) -> None:
        conn.send([Kind.PONG])

    def _on_pong(self, conn: PeerConnection, message: list[Any]) -> None:
        pass  # any frame proves the peer is alive; the reader notes the time

    def _on_bye(self, conn: PeerConnection, message: list[Any]) -> None:
        conn.leaving = True

    def _on_rps_call(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid, name, args, kwargs, monitors = _request(message, 6)
        if type(name) is not str:
            raise _Malformed(f"RPS name is {describe(name)}")
        rps = self.node._registry["rps"].get(name)
        if not isinstance(rps, RPS):
            conn.reply(rid, LookupError(f"no RPS registered as {describe(name)}"))
            return
        if (
            type(args) is not list
            or type(kwargs) is not dict
            or not all(type(k) is str for k in kwargs)
            or type(monitors) is not list
            or not all(isinstance(m, Task) for m in monitors)
        ):
            conn.reply(rid, TypeError(f"malformed call of RPS {describe(name)}"))
            return
        try:
            task = rps._start(args, kwargs, monitors)
        except (TypeError, PycosError) as exc:
            # Arguments that do not fit the method, or a node that is stopping: the
            # caller's to know (anything else is a bug here, for the dispatcher).
            log.warning("call of %r from %r failed: %s", rps, conn, escape(str(exc), 200))
            conn.reply(rid, exc)
            return
        conn.reply(rid, task)
        task._when_done(lambda: conn.push_result(task._task_id, task._value))

    def _on_node_status(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid = _request(message, 2)
        conn.reply(rid, status_to_wire(self.node._status_here()))

    def _on_echo(self, conn: PeerConnection, message: list[Any]) -> None:
        _, rid = _request(message, 2)
        conn.reply(rid, True)

    def _on_task_result(self, conn: PeerConnection, message: list[Any]) -> None:
        _, task_id, value = _fields(message, 3)
        key = (conn.node_id, _task_id(task_id))
        pushed = self._results.get(key)
        if pushed is None:
            pushed = self._results[key] = _Pushed()
            while len(self._results) > _RESULTS_KEPT:
                self._results.popitem(last=False)
        pushed.finish(value)


class _Malformed(Exception):
    """A peer's message without the shape of its kind.  The text says what is wrong,
    with the peer's values only as ``describe`` shows them (it is logged)."""


_KIND_NAMES = {value: name for name, value in vars(Kind).items() if name.isupper()}


def _kind_name(kind: object) -> str:
    if type(kind) is int:
        return _KIND_NAMES.get(kind) or f"kind {_id_text(kind)}"
    return "unknown"


def _id_text(value: int) -> str:
    # A peer's int of any size: printing a huge one is slow, or refused.
    return str(value) if -(2**63) <= value < 2**63 else "a huge int"


def _fields(message: list[Any], count: int) -> list[Any]:
    if len(message) != count:
        raise _Malformed(f"{len(message) - 1} fields instead of {count - 1}")
    return message


def _request(message: list[Any], count: int) -> list[Any]:
    """A request's fields (``count`` with the kind), its id checked."""
    _fields(message, count)
    if type(message[1]) is not int:
        raise _Malformed(f"request id is {describe(message[1])}")
    return message


def _task_id(value: object) -> int:
    # Task ids count up from 1.  The range also bounds hash collisions: the peer's
    # ids become dict keys here (pushed results, watches), and big multiples of
    # 2**61 - 1 all hash alike, which makes inserting them quadratic.
    if type(value) is not int or not 0 < value < 2**63:
        raise _Malformed(
            f"task id is {describe(value) if type(value) is not int else 'out of range'}"
        )
    return value


def _visited(value: object) -> tuple[bytes, ...]:
    """The channels a forwarded channel message has passed (see ``_channel.py``)."""
    if type(value) is not list:
        raise _Malformed(f"a channel path is {describe(value)}")
    if len(value) > MAX_HOPS:
        raise _Malformed(f"a channel path of {len(value)} channels (at most {MAX_HOPS})")
    if not all(type(key) is bytes for key in value):
        raise _Malformed("a channel path holds a key that is not bytes")
    return tuple(value)


def _wire_timeout(value: object) -> float | None:
    """A timeout from a peer's message: None or seconds >= 0 (else ``_Malformed``,
    which the dispatcher answers with the request's failure value)."""
    if value is None:
        return None
    if (type(value) is not int and type(value) is not float) or not value >= 0:
        raise _Malformed(f"timeout is {describe(value)}")  # (`not >= 0` refuses NaN)
    return float(value)


_RESULTS_KEPT = 65536
_LOCATE_ROUND = 30.0  # seconds a peer waits for a name per request of a long locate
_TOLD_LOST_KEPT = 4096


class _Pushed:
    """A pushed task result, or the promise of one, and the tasks waiting for it."""

    __slots__ = ("done", "value", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.waiters: list[Parked] = []

    def finish(self, value: Any) -> None:
        self.value = value
        self.done = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.wake(True)


# PeerLost travels inside MonitorStatus: let it arrive as itself on every node.
register_type(PeerLost, "triopycos.PeerLost")
