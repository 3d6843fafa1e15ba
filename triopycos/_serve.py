"""Serving peers: what a node does with each message its peers send (the dispatcher).

A message arrives here typed and with the shape of its kind (the session checked it,
``protocol/session.py``, and dealt with the malformed ones), so a handler only asks
what the message means to this node: is there such a task, such a channel.  Two
kinds of failure stay, and are told apart:

* what the peer asks for does not exist (an unknown task or channel): a request is
  answered with its failure value, a one-way message is dropped and logged once per
  connection;
* a handler that raises is a bug of this node: logged as an error with its
  traceback, every time; a request is still answered with its failure value, and
  the session and the node go on serving.

``ServingPeers`` is the serving half of ``RemoteOps`` (``_remote.py``), which holds
the state both halves use: the watches of remote tasks and the told-lost marks
(``_watches.py``), the pushed RPS results (``_pushed.py``), the monitors and
subscriptions held for peers (``_holds.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, cast

import trio

from ._channel import Channel
from ._links import link_from_peer, unlink_from_peer
from ._node_status import status_to_wire
from ._rps import RPS
from ._task import Task
from .protocol.messages import (
    Bye,
    ChannelDeliver,
    ChannelSend,
    ChannelSubscribe,
    ChannelUnsubscribe,
    Echo,
    Locate,
    Message,
    Request,
    RpsCall,
    StatusRequest,
    TaskAlive,
    TaskDeliver,
    TaskFinish,
    TaskLink,
    TaskMonitor,
    TaskResult,
    TaskSend,
    TaskTerminate,
    TaskUnlink,
    kind_name,
)
from .protocol.printable import describe, escape
from .protocol.session import SessionEvent, TaskMessages
from .services.peer import PeerConnection
from .values import MonitorStatus, PycosError

if TYPE_CHECKING:
    from ._node import Kind as RegistryKind
    from ._node import Pycos
    from ._pushed import PushedResults
    from ._watches import WatchTable

__all__ = ["ServingPeers"]

log = logging.getLogger("triopycos.remote")


class ServingPeers:
    """The dispatcher and its handlers (see the module docstring)."""

    node: Pycos
    _results: PushedResults
    _watches: WatchTable

    @staticmethod
    def is_reference(value: object, kind: str) -> bool:
        """The session's test of a monitor, subscriber or RPS monitor."""
        if kind == "task":
            return isinstance(value, Task)
        return kind == "channel" and isinstance(value, Channel)

    def dispatch(self, conn: PeerConnection, events: Iterable[object]) -> None:
        """Handle the events of one read of ``conn`` in order: the messages here, the
        session's own (a reply, the peer's BYE, a message it dropped) by the
        connection (``conn.session_event``), up to BYE.  A message never makes it
        raise, and every request gets a reply (see the module docstring); a
        ``ProtocolError`` of the session comes out of ``events``, to the caller.

        One call per read, not per message: the hot path (a message for a running
        task) costs a loop turn here and no call, and a run of them for one task
        (``TaskMessages``, from ``events(runs=True)``) one call for the lot."""
        tasks = self.node._tasks
        for message in events:
            try:
                if type(message) is TaskSend:
                    # The hot path, ahead of the match (a class pattern costs as
                    # much again as the rest): a message for a running task.
                    task = tasks.get(message.task_id)
                    payload = message.message
                    if task is None or type(payload) is MonitorStatus:
                        self._on_task_send(conn, message)
                    else:
                        task._send(payload)
                    continue
                if type(message) is TaskMessages:
                    # A run of them for one task (the session reads runs as one):
                    # into its mailbox in one call, unless one needs the slow path.
                    task = tasks.get(message.task_id)
                    payloads = message.messages
                    if (
                        task is None
                        or MonitorStatus in map(type, payloads)
                        or not task._send_run(payloads)
                    ):
                        self._one_by_one(conn, message)
                    continue
                match message:  # (the frequent kinds first: a case costs a check)
                    case SessionEvent() | Bye():
                        # A reply, the peer's BYE, a message the session dropped.
                        if conn.session_event(message):
                            return
                    case TaskDeliver():
                        self._on_task_deliver(conn, message)
                    case ChannelSend():
                        self._on_channel_send(conn, message)
                    case TaskResult():
                        self._on_task_result(conn, message)
                    case RpsCall():
                        self._on_rps_call(conn, message)
                    case Locate():
                        self._on_locate(conn, message)
                    case TaskMonitor():
                        self._on_task_monitor(conn, message)
                    case TaskFinish():
                        self._on_task_finish(conn, message)
                    case TaskAlive():
                        self._on_task_alive(conn, message)
                    case ChannelDeliver():
                        self._on_channel_deliver(conn, message)
                    case ChannelSubscribe() | ChannelUnsubscribe():
                        self._on_subscription(conn, message)
                    case TaskTerminate():
                        self._on_task_terminate(conn, message)
                    case TaskLink():
                        self._on_task_link(conn, message)
                    case TaskUnlink():
                        self._on_task_unlink(conn, message)
                    case StatusRequest():
                        self._on_node_status(conn, message)
                    case Echo():
                        self._on_echo(conn, message)
                    case _:
                        raise TypeError(f"{type(message).__name__} is not an event")
            except Exception:
                self._bug(conn, message)

    def _one_by_one(self, conn: PeerConnection, run: TaskMessages) -> None:
        """A run of task messages as the ``TaskSend`` each one is (a bug handling one
        is logged and the rest are still handled, as for separate events)."""
        task_id = run.task_id
        tasks = self.node._tasks
        for payload in run.messages:
            message = TaskSend(task_id, payload)
            try:
                task = tasks.get(task_id)
                if task is None or type(payload) is MonitorStatus:
                    self._on_task_send(conn, message)
                else:
                    task._send(payload)
            except Exception:
                self._bug(conn, message)

    @staticmethod
    def _bug(conn: PeerConnection, message: object) -> None:
        """A handler raised: a bug of this node, said loudly; a request still gets
        its failure value."""
        what = kind_name(message.KIND) if isinstance(message, Message) else "session"
        log.exception(
            "%r: handling a %s message failed (a bug of this node, not the peer's); "
            "the node goes on serving",
            conn,
            what,
        )
        if isinstance(message, Request):
            conn.reply(message, message.FAILURE)

    def _later(
        self, conn: PeerConnection, request: Request, handler: Callable[[], Awaitable[None]]
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
            conn.reply(request, request.FAILURE)
            return False
        conn.parked += 1

        async def serve() -> None:
            try:
                await handler()
            except Exception:
                log.exception(
                    "%r: serving a %s request failed (a bug of this node, not the peer's)",
                    conn,
                    kind_name(request.KIND),
                )
                conn.reply(request, request.FAILURE)
            finally:
                conn.parked -= 1

        conn.start_soon(serve)
        return True

    def _local_task(self, task_id: int) -> Task | None:
        return self.node._tasks.get(task_id) or self.node._ended.get(task_id)

    # -- tasks --------------------------------------------------------------------

    def _on_task_send(self, conn: PeerConnection, message: TaskSend) -> None:
        task_id = message.task_id
        payload = message.message
        if (
            type(payload) is MonitorStatus
            and isinstance(payload.info, Task)
            and payload.info._node_id != conn.node_id
        ):
            # Only a task's own node reports its end (a lost node's tasks are
            # reported here, by on_offline): a peer's word on another node's task,
            # or on one of ours, would let it forge ends (a supervisor would
            # restart a child that still runs).
            conn.log_once(
                "status-origin", "status of a task of another node than the sender's dropped"
            )
            return
        task = self.node._tasks.get(task_id)
        if task is None:
            ended = self.node._ended.get(task_id)
            if ended is not None and type(payload) is MonitorStatus:
                if isinstance(payload.info, Task):  # the monitor is gone: watch over
                    self._watches.heard(conn.node_id, payload.info._task_id, ended)
                return
            conn.log_once("no-task", "message for unknown task id %d dropped", task_id)
            return
        if (
            type(payload) is MonitorStatus
            and isinstance(payload.info, Task)
            and not self._watches.heard(conn.node_id, payload.info._task_id, task)
        ):
            return  # it already heard PeerLost for this task
        task._send(payload)

    def _on_task_deliver(self, conn: PeerConnection, message: TaskDeliver) -> None:
        task = self.node._tasks.get(message.task_id)
        conn.reply(message, 1 if task is not None and task._send(message.message) == 0 else 0)

    def _on_task_terminate(self, conn: PeerConnection, message: TaskTerminate) -> None:
        task = self.node._tasks.get(message.task_id)
        if task is not None:
            task.terminate()

    def _on_task_monitor(self, conn: PeerConnection, message: TaskMonitor) -> None:
        task = self._local_task(message.task_id)
        conn.reply(
            message, -1 if task is None else task._add_monitor(message.monitor, conn.node_id)
        )

    def _on_task_link(self, conn: PeerConnection, message: TaskLink) -> None:
        task = self.node._tasks.get(message.task_id)
        partner: Task = message.partner
        # A peer links its own tasks only; a task that has ended links with nothing
        # (the caller gets -1: its exit is not kept to be told later).
        if task is None or not task._alive or partner._node_id != conn.node_id:
            conn.reply(message, -1)
            return
        conn.reply(message, link_from_peer(task, partner))

    def _on_task_unlink(self, conn: PeerConnection, message: TaskUnlink) -> None:
        partner: Task = message.partner
        task = self.node._tasks.get(message.task_id)
        if task is None or partner._node_id != conn.node_id:
            return  # ended here since (its own end told the partner), or not the peer's
        unlink_from_peer(task, partner, message.exit)

    def _on_task_finish(self, conn: PeerConnection, message: TaskFinish) -> None:
        wait = message.timeout
        task = self._local_task(message.task_id)
        if task is None:
            conn.reply(message, None)
            return
        if not task._alive or wait == 0:
            conn.reply(message, None if task._alive else task._value)
            return
        replied = False
        parked = trio.CancelScope()
        ended = task

        def on_end() -> None:
            # At the very moment of the end: the reply is queued ahead of anything
            # the node sends later (a goodbye included).
            nonlocal replied
            replied = True
            conn.reply(message, ended._value)
            parked.cancel()

        async def wait_for_end() -> None:
            try:
                with parked:
                    await trio.sleep(math.inf if wait is None else wait)
                if not replied:
                    conn.reply(message, None)  # timed out
            finally:
                ended._forget_when_done(on_end)

        if self._later(conn, message, wait_for_end):
            task._when_done(on_end)

    def _on_task_alive(self, conn: PeerConnection, message: TaskAlive) -> None:
        conn.reply(message, self.node._tasks.get(message.task_id) is not None)

    def _on_task_result(self, conn: PeerConnection, message: TaskResult) -> None:
        self._results.arrived(conn, message.task_id, message.value)  # only ours are kept

    # -- names --------------------------------------------------------------------

    def _on_locate(self, conn: PeerConnection, message: Locate) -> None:
        what = cast("RegistryKind", message.what)
        name = message.name
        timeout = message.timeout
        found = self.node._names.by_kind[what].get(name)
        if found is not None or not timeout:
            conn.reply(message, found)
            return

        async def wait_and_reply() -> None:
            conn.reply(message, await self.node._names.wait_for(what, name, timeout))

        self._later(conn, message, wait_and_reply)

    # -- channels -----------------------------------------------------------------

    def _channel(self, name: str) -> Channel | None:
        found = self.node._names.by_kind["channel"].get(name)
        return found if isinstance(found, Channel) else None

    def _on_channel_send(self, conn: PeerConnection, message: ChannelSend) -> None:
        channel = self._channel(message.name)
        if channel is None:
            conn.log_once(
                "no-channel", "message for unknown channel %s dropped", describe(message.name)
            )
        else:
            channel._forward(message.message, message.sent, message.hops)

    def _on_channel_deliver(self, conn: PeerConnection, message: ChannelDeliver) -> None:
        channel = self._channel(message.name)
        if channel is None:
            conn.reply(message, 0)
            return
        target = channel

        async def deliver_and_reply() -> None:
            delivered = await target._deliver(
                message.message, message.timeout, message.n, message.sent, message.hops
            )
            conn.reply(message, delivered)

        self._later(conn, message, deliver_and_reply)

    def _on_subscription(
        self, conn: PeerConnection, message: ChannelSubscribe | ChannelUnsubscribe
    ) -> None:
        channel = self._channel(message.name)
        if channel is None:
            conn.reply(message, -1)
            return
        target = channel
        subscriber = message.subscriber

        async def act_and_reply() -> None:
            if isinstance(message, ChannelSubscribe):
                await trio.lowlevel.checkpoint()
                conn.reply(message, target._add_subscriber(subscriber, conn.node_id))
            else:
                conn.reply(message, await target.unsubscribe(subscriber, message.timeout))

        self._later(conn, message, act_and_reply)

    # -- RPS and the node itself ---------------------------------------------------

    def _on_rps_call(self, conn: PeerConnection, message: RpsCall) -> None:
        name = message.name
        rps = self.node._names.by_kind["rps"].get(name)
        if not isinstance(rps, RPS):
            conn.reply(message, LookupError(f"no RPS registered as {describe(name)}"))
            return
        try:
            task = rps._start(
                message.args, message.kwargs, message.monitors, conn.node_id, message.links
            )
        except (TypeError, PycosError) as exc:
            # Arguments that do not fit the method, or a node that is stopping: the
            # caller's to know (anything else is a bug here, for the dispatcher).
            log.warning("call of %r from %r failed: %s", rps, conn, escape(str(exc), 200))
            conn.reply(message, exc)
            return
        conn.reply(message, task)
        task._when_done(lambda: conn.push_result(task._task_id, task._value))

    def _on_node_status(self, conn: PeerConnection, message: StatusRequest) -> None:
        conn.reply(message, status_to_wire(self.node._status_here()))

    def _on_echo(self, conn: PeerConnection, message: Echo) -> None:
        conn.reply(message, True)
