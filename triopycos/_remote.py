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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._channel import Channel
from ._dials import DialLimiter, Unreached
from ._errors import PeerLost, PycosError
from ._holds import PeerHolds
from ._location import Location
from ._node_status import NodeStatus, RemoteStatistics, status_from_wire, status_to_wire
from ._pushed import PushedResults
from ._rps import RPS
from ._send_ids import MAX_HOPS, MAX_SEND_ID
from ._status import MonitorStatus, PeerStatus
from ._task import Task
from ._watches import WatchTable
from .protocol.codec import Ref
from .protocol.messages import FAILURE_VALUES, REQUEST_KINDS, Kind
from .protocol.printable import describe, escape
from .services.peer import PeerConnection
from .services.timer import Waiter

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
        # Local tasks monitoring tasks on peers, so a lost peer can tell them at once
        # and exactly once; and the lost incarnations (see _watches.py).
        self._watches = WatchTable()
        self._status_tasks: list[Task] = []
        # Monitors and subscriptions held here that involve other nodes: capped per
        # peer, dropped with a lost node (see _holds.py).
        self.holds = PeerHolds(node)
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
        # each task ends: finish() needs no second round trip (see _pushed.py).
        self._results = PushedResults(node)
        # Messages for nodes we are connecting to on demand, in the order sent, and
        # the slots for such connections (see _dials.py).
        self._unreached: dict[bytes, Unreached] = {}
        self.dials = DialLimiter(node)

    # -- reaching the owner of a reference ----------------------------------------

    def _connected(self, node_id: bytes) -> PeerConnection | None:
        peers = self.node._peers
        return None if peers is None else peers.by_id.get(node_id)

    async def _reach(
        self,
        node_id: bytes,
        location: Location,
        timeout: float | None,
        for_peer: bytes | None = None,
    ) -> PeerConnection | None:
        """The connection to incarnation ``node_id``, connecting to ``location`` if we
        are not peered with it yet (references travel to third nodes).  ``for_peer``:
        the peer on whose behalf (see ``_dials.py``), None for this node's code."""
        conn = self._connected(node_id)
        peers = self.node._peers
        if conn is not None or peers is None:
            # No extra checkpoint: the request that follows is one (every pass costs
            # a scheduler round on the message path).
            return conn
        with trio.move_on_after(math.inf if timeout is None else timeout):
            unreached = self._unreached.get(node_id)
            if unreached is not None:
                # Sends queued for this node go first (FIFO per node pair).
                await unreached.flushed.wait()
                conn = self._connected(node_id)
            else:
                conn = await self._dial(location, for_peer)
        if conn is not None and conn.node_id == node_id:
            return conn
        return None

    async def _dial(self, location: Location, for_peer: bytes | None) -> PeerConnection | None:
        """``PeerManager.connect`` within the on-demand dial slots (``_dials.py``):
        this node's own code waits for a slot; a peer's request is refused (None)
        when there is none."""
        peers = self.node._peers
        if peers is None:
            await trio.lowlevel.checkpoint()
            return None
        if for_peer is None:
            await self.dials.take()
        elif not self.dials.try_take(for_peer, location):
            await trio.lowlevel.checkpoint()
            return None
        try:
            return await peers.connect(location)
        finally:
            self.dials.release(for_peer)

    def _stale(self, node_id: bytes, location: Location) -> bool:
        peers = self.node._peers
        # A lost incarnation: messages to it fail at once instead of each trying to
        # reconnect (re-peering is the manager's job).
        if peers is None or self._watches.is_lost(node_id):
            return True
        current = peers.find(location)
        return current is not None and current.node_id != node_id

    # -- tasks --------------------------------------------------------------------

    def task_send(self, task: Task, message: Any, for_peer: bytes | None = None) -> int:
        """``send`` to a task of another node.  ``for_peer``: the peer on whose
        behalf (a monitor's status, a channel's message to a subscriber it asked
        for), which limits the connections this may open (see ``_dials.py``)."""
        conn = self._connected(task._node_id)
        if conn is not None:
            return conn.send([_TASK_SEND, task._task_id, message])
        if self._stale(task._node_id, task._location):
            return -1
        # Not peered with its node yet: check now that it can be encoded (so the caller
        # gets the TypeError), then queue it; one background connect per node sends
        # the queue in order once connected.
        size = len(self.node._codec.encode(message))
        unreached = self._unreached.get(task._node_id)
        if unreached is None:
            if self.node._closed or not self.dials.try_take(for_peer, task._location):
                return -1
            unreached = self._unreached[task._node_id] = Unreached()
            self.node._spawn_service(
                self._send_when_reached, task._node_id, task._location, for_peer
            )
        peers = self.node._peers
        assert peers is not None  # (else _stale)
        if unreached.size + size > peers.limits.max_outbox_bytes and unreached.messages:
            peers.stats.messages_refused += 1
            return -1
        unreached.messages.append([_TASK_SEND, task._task_id, message])
        unreached.size += size
        return 0

    async def _send_when_reached(
        self, node_id: bytes, location: Location, for_peer: bytes | None
    ) -> None:
        conn: PeerConnection | None = None
        try:
            assert self.node._peers is not None
            conn = await self.node._peers.connect(location)
            if conn is not None and conn.node_id != node_id:
                conn = None
        finally:
            self.dials.release(for_peer)
            unreached = self._unreached.pop(node_id)
            if conn is None:
                if self.dials.quota.allow(trio.current_time()):
                    log.warning(
                        "%d message(s) to %s dropped: cannot reach it",
                        len(unreached.messages),
                        location,
                    )
            else:
                for message in unreached.messages:
                    conn.send(message)
            unreached.flushed.set()

    async def task_deliver(
        self, task: Task, message: Any, timeout: float | None, for_peer: bytes | None = None
    ) -> int:
        conn = await self._reach(task._node_id, task._location, timeout, for_peer)
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
        pushed = self._results.get(task._node_id, task._task_id)
        if pushed is not None:
            # A task started by our RPS call: its result is (or will be) pushed here,
            # no request needed.
            if not pushed.done:
                waiter = Waiter()
                pushed.waiters.append(waiter)
                try:
                    await waiter.wait(self.node._timer, timeout)
                finally:
                    if not waiter.woken:  # timed out or cancelled
                        pushed.waiters.remove(waiter)
            else:
                await trio.lowlevel.checkpoint()
            if pushed.done:
                self._results.read(task._node_id, task._task_id)
            return pushed.value
        conn = await self._reach(task._node_id, task._location, timeout)
        if conn is None:
            return None
        return await conn.request(Kind.TASK_FINISH, task._task_id, timeout, timeout=timeout)

    def task_ended(self, task: Task) -> bool:
        """Whether a task started by one of our RPS calls is known to have ended."""
        return self._results.ended(task._node_id, task._task_id)

    async def task_monitor(self, monitor: Task, observe: Task) -> int:
        conn = await self._reach(observe._node_id, observe._location, None)
        if conn is None:
            return -1
        # Watch before asking: the status of a task that has already ended can come
        # back ahead of the reply, and must find (and end) the watch.
        # (Monitoring again after PeerLost: this monitor wants the real status.)
        watching = monitor._local and self._watches.watch(
            conn.node_id, observe._task_id, monitor, observe._name
        )
        result = await conn.request(Kind.TASK_MONITOR, observe._task_id, monitor)
        if type(result) is not int or result != 0:
            if watching:
                self._watches.unwatch(conn.node_id, observe._task_id, monitor)
            return -1
        return 0

    def task_is_alive(self, task: Task) -> bool:
        return self._connected(task._node_id) is not None

    # -- channels -----------------------------------------------------------------

    def channel_send(
        self, channel: Channel, message: Any, sent: bytes | None = None, hops: int = 0
    ) -> int:
        conn = self._connected(channel._node_id)
        if conn is None:
            return -1
        if sent is not None:  # forwarded by our channels: its send id goes with it
            return conn.send([Kind.CHANNEL_SEND, channel._name, message, [sent, hops]])
        return conn.send([Kind.CHANNEL_SEND, channel._name, message])

    async def channel_deliver(
        self,
        channel: Channel,
        message: Any,
        timeout: float | None,
        n: int,
        sent: bytes | None = None,
        hops: int = 0,
        for_peer: bytes | None = None,
    ) -> int:
        conn = await self._reach(channel._node_id, channel._location, timeout, for_peer)
        if conn is None:
            return 0
        fields: list[Any] = [channel._name, message, timeout, n]
        if sent is not None:
            fields.append([sent, hops])
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
                    self._watches.watch(node_id, result._task_id, monitor, result._name)
                # Its result will be pushed here (finish() needs no request).
                self._results.expect(node_id, result._task_id)

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
                conn = await self._dial(location, None)
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

    def statistics(self) -> RemoteStatistics:
        return RemoteStatistics(
            monitors_refused=self.holds.refused,
            dials_refused=self.dials.refused,
            results_dropped=self._results.dropped,
        )

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
        self._watches.online(conn.node_id, conn.locations)
        self._results.online(conn.node_id)
        self._tell_status(conn, PeerStatus.Online)

    def on_offline(self, conn: PeerConnection) -> None:
        log.info("peer %r offline", conn)
        self._results.lost(conn.node_id)  # waiting finish() calls give None at once
        # Monitors and subscribers on the lost node, or asked for by it, leave every
        # task and channel here: their statuses and messages cannot reach it.
        self.holds.lost(conn.node_id)
        # Each monitor of its tasks hears PeerLost now, and only now (_watches.py).
        for task_id, name, monitors in self._watches.lost(conn.node_id, conn.location):
            ref = Ref("task", conn.node_id, task_id, name, conn.location)
            lost = Task._reference(self.node, ref)
            reason = f"peer {conn.name!r} at {conn.location} was lost"
            for monitor in monitors:
                monitor._send(MonitorStatus(lost, PeerLost, reason))
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
                if isinstance(payload.info, Task):  # the monitor is gone: watch over
                    self._watches.heard(conn.node_id, payload.info._task_id, ended)
                return
            conn.log_once("no-task", "message for unknown task id %s dropped", _id_text(task_id))
            return
        if (
            type(payload) is MonitorStatus
            and isinstance(payload.info, Task)
            and not self._watches.heard(conn.node_id, payload.info._task_id, task)
        ):
            return  # it already heard PeerLost for this task
        task._send(payload)

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
        conn.reply(rid, -1 if task is None else task._add_monitor(monitor, conn.node_id))

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
            raise _Malformed("a channel message is a name, a message and its send's mark")
        channel = self._channel(message[1])
        sent, hops = _forwarded(message[3]) if len(message) == 4 else _NOT_FORWARDED
        if channel is None:
            conn.log_once(
                "no-channel", "message for unknown channel %s dropped", describe(message[1])
            )
        else:
            channel._forward(message[2], sent, hops)

    def _on_channel_deliver(self, conn: PeerConnection, message: list[Any]) -> None:
        if len(message) not in (6, 7):
            raise _Malformed("a channel delivery has 5 or 6 fields")
        _, rid, name, payload, timeout, n = _request(message[:6], 6)
        sent, hops = _forwarded(message[6]) if len(message) == 7 else _NOT_FORWARDED
        wait = _wire_timeout(timeout)
        if type(n) is not int or n < 0:
            raise _Malformed(f"n is {describe(n)}")
        channel = self._channel(name)
        if channel is None:
            conn.reply(rid, 0)
            return

        async def deliver_and_reply() -> None:
            conn.reply(rid, await channel._deliver(payload, wait, n, sent, hops))

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
                await trio.lowlevel.checkpoint()
                conn.reply(rid, target._add_subscriber(subscriber, conn.node_id))
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
            task = rps._start(args, kwargs, monitors, conn.node_id)
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
        self._results.arrived(conn, _task_id(task_id), value)  # only ours are kept


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


def _forwarded(value: object) -> tuple[bytes, int]:
    """The send id and hop count a forwarded channel message carries (see
    ``_send_ids.py``)."""
    if type(value) is not list or len(value) != 2:
        raise _Malformed(f"a forwarded channel message's mark is {describe(value)}")
    sent, hops = value
    if type(sent) is not bytes or not 0 < len(sent) <= MAX_SEND_ID:
        raise _Malformed(f"a channel send id is {describe(sent)}")
    if type(hops) is not int or not 0 < hops <= MAX_HOPS:
        raise _Malformed(f"a channel message's hops are {describe(hops)} (1 to {MAX_HOPS})")
    return sent, hops


_NOT_FORWARDED: tuple[None, int] = (None, 0)


def _wire_timeout(value: object) -> float | None:
    """A timeout from a peer's message: None or seconds >= 0 (else ``_Malformed``,
    which the dispatcher answers with the request's failure value)."""
    if value is None:
        return None
    if (type(value) is not int and type(value) is not float) or not value >= 0:
        raise _Malformed(f"timeout is {describe(value)}")  # (`not >= 0` refuses NaN)
    return float(value)


_LOCATE_ROUND = 30.0  # seconds a peer waits for a name per request of a long locate
