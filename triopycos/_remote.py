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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._channel import Channel
from ._dials import DialLimiter, Unreached
from ._holds import PeerHolds
from ._links import Asking
from ._node_status import NodeStatus, RemoteStatistics, status_from_wire
from ._pushed import PushedResults
from ._remote_links import RemoteLinks
from ._rps import RPS
from ._serve import ServingPeers
from ._task import Task
from ._watches import WatchTable
from .protocol.codec import Ref
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
    TaskLink,
    TaskMonitor,
    TaskSend,
    TaskTerminate,
    TaskUnlink,
)
from .services.peer import PeerConnection
from .services.timer import Parked
from .values import Location, MonitorStatus, PeerLost, PeerStatus

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
        # Local tasks monitoring tasks on peers, so a lost peer can tell them at once
        # and exactly once; and the lost incarnations (see _watches.py).
        self._watches = WatchTable()
        self._status_tasks: list[Task] = []
        # Monitors and subscriptions held here that involve other nodes: capped per
        # peer, dropped with a lost node (see _holds.py).
        self.holds = PeerHolds(node)
        # Results of tasks started by our RPS calls, pushed by the serving node when
        # each task ends: finish() needs no second round trip (see _pushed.py).
        self._results = PushedResults(node)
        # Messages for nodes we are connecting to on demand, in the order sent, and
        # the slots for such connections (see _dials.py).
        self._unreached: dict[bytes, Unreached] = {}
        self.dials = DialLimiter(node)
        # Links of local tasks with tasks of peers (see _remote_links.py).
        self.links = RemoteLinks(node)

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
        peers = self.node._peers  # (_connected, inline: this is every message's path)
        conn = None if peers is None else peers.by_id.get(task._node_id)
        if conn is not None:
            return conn.send_task(task._task_id, message)
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
        unreached.messages.append(TaskSend(task._task_id, message))
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
        result = await conn.request(TaskDeliver(task._task_id, message), timeout=timeout)
        return 1 if type(result) is int and result == 1 else 0

    def task_terminate(self, task: Task) -> int:
        conn = self._connected(task._node_id)
        if conn is None:
            return -1
        return conn.send(TaskTerminate(task._task_id))

    async def task_finish(self, task: Task, timeout: float | None) -> Any:
        pushed = self._results.get(task._node_id, task._task_id)
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
            if pushed.done:
                self._results.read(task._node_id, task._task_id)
            return pushed.value
        conn = await self._reach(task._node_id, task._location, timeout)
        if conn is None:
            return None
        return await conn.request(TaskFinish(task._task_id, timeout), timeout=timeout)

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
        result = await conn.request(TaskMonitor(observe._task_id, monitor))
        if type(result) is not int or result != 0:
            if watching:
                self._watches.unwatch(conn.node_id, observe._task_id, monitor)
            return -1
        return 0

    async def task_link(self, task: Task, partner: Task) -> int:
        """Link the local ``task`` with ``partner``, a task of another node: 0 / -1
        (see _remote_links.py for the order of things)."""
        conn = await self._reach(partner._node_id, partner._location, None)
        state = task._links
        if conn is None or state is None or not task._alive:
            return -1
        state.partners[partner] = partner._node_id
        self.links.add(task, partner, asked=False)
        asking = Asking()
        if state.asking is None:
            state.asking = {}
        state.asking[partner] = asking
        result: object = -1
        try:
            result = await conn.request(TaskLink(partner._task_id, task))
        finally:
            made = type(result) is int and result == 0
            if not made:
                # Refused, or cancelled while asking: undo here, unless the link is
                # gone already (an exit or a lost node), and there (an UNLINK, a
                # no-op if it was refused), so no half of it is left to fire later.
                state = task._links
                if state is not None and state.partners.pop(partner, None) is not None:
                    self.task_unlink(partner, task, None)
            if state is not None and state.asking is not None:
                state.asking.pop(partner, None)
            asking.result = 0 if made else -1
            asking.answered.set()
        return asking.result

    def task_unlink(self, partner: Task, task: Task, exit: MonitorStatus | None) -> None:
        """Tell ``partner``'s node that its link with the local ``task`` is gone: with
        ``exit``, because ``task`` ended so.  Not connected: that node has lost this
        one (or will), and applies ``PeerLost`` instead."""
        self.links.remove(task, partner)
        conn = self._connected(partner._node_id)
        if conn is None:
            return
        try:
            conn.send(TaskUnlink(partner._task_id, task, exit))
        except (TypeError, ValueError) as exc:
            # The exit value cannot travel: say so instead (as a monitor is told).
            assert exit is not None
            note = MonitorStatus(task, type(exc), f"exit status not sent: {exc}")
            conn.send(TaskUnlink(partner._task_id, task, note))

    def task_is_alive(self, task: Task) -> bool:
        return self._connected(task._node_id) is not None

    # -- channels -----------------------------------------------------------------

    def channel_send(
        self, channel: Channel, message: Any, sent: bytes | None = None, hops: int = 0
    ) -> int:
        conn = self._connected(channel._node_id)
        if conn is None:
            return -1
        # A message forwarded by our channels takes its send id along.
        return conn.send(ChannelSend(channel._name, message, sent, hops))

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
        request = ChannelDeliver(channel._name, message, timeout, n, sent, hops)
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
        self,
        rps: RPS,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        monitors: list[Task],
        links: Sequence[Task] = (),
    ) -> Any:
        conn = await self._reach(rps._node_id, rps._location, None)
        if conn is None:
            return None
        node_id = conn.node_id
        watchers = [m for m in monitors if m._local]

        def on_reply(result: Any) -> None:
            # Called as the reply is read, before anything the new task sends (its
            # status, its pushed result, an exit of a link) is dispatched: the
            # watches that on_offline tells PeerLost, and the links, exist before
            # the task can end or its node be lost.
            if isinstance(result, Task) and result._node_id == node_id:
                for monitor in watchers:
                    self._watches.watch(node_id, result._task_id, monitor, result._name)
                # Its result will be pushed here (finish() needs no request).
                self._results.expect(node_id, result._task_id)
                for partner in links:
                    self._linked_by_call(partner, result)

        return await conn.request(
            RpsCall(rps._name, list(args), kwargs, monitors, list(links)), on_reply=on_reply
        )

    def _linked_by_call(self, partner: Task, task: Task) -> None:
        """The serving node linked the local ``partner`` with ``task``, the task a
        call started: hold this side of the link (or, if ``partner`` has ended
        meanwhile, tell that node its exit)."""
        state = partner._links
        if partner._alive and state is not None:
            state.partners[task] = task._node_id
            self.links.add(partner, task, asked=False)
        elif partner._exit is not None:
            kind, value = partner._exit
            self.task_unlink(task, partner, MonitorStatus(partner, kind, value))

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

    def statistics(self) -> RemoteStatistics:
        return RemoteStatistics(
            monitors_refused=self.holds.refused + self.links.refused,
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
        # Then each local task linked with one of its tasks (after the monitors, as
        # for a local end: they hear the cause first).
        self.links.lost(conn.node_id, f"peer {conn.name!r} at {conn.location} was lost")
        self._tell_status(conn, PeerStatus.Offline)


_LOCATE_ROUND = 30.0  # seconds a peer waits for a name per request of a long locate
