"""``Task``: a trio task with a mailbox, a name, monitors and an exit status.

A local task is one trio task running in its node's user-task nursery inside its own
``CancelScope``; ``terminate()`` cancels that scope.  The same class stands for
references to tasks on other nodes (they carry the owner's node id and location and
route every call through the local node's peer layer).

Mailbox rule: only the task itself receives.  ``send`` to a task parked in
``receive`` hands the message over with the wake-up itself (one hop, no queue, no
intermediate channel); otherwise it appends to the mailbox, a deque made only when
a message has to wait (an idle task holds no queue).  A task waiting in ``receive`` is
a ``Parked`` (``services/timer.py``): its timeout is the node's timer's, not a cancel
scope.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

import trio

from . import _generator, _links
from ._context import current_node_var as _current_node
from ._entity import Entity
from ._generator import run_generator
from ._holds import involves
from ._links import LinkMethods
from ._task_arguments import _body_kind, _exception_from, check_timeout
from ._threads import from_any_thread, get_ident
from .protocol.codec import Ref
from .protocol.printable import escape
from .services.timer import Parked
from .values import Location, MonitorStatus, PycosError

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["Task"]

log = logging.getLogger("triopycos.task")

_current_task = trio.lowlevel.current_task
_reschedule = trio.lowlevel.reschedule
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_ABORTED = trio.lowlevel.Abort.SUCCEEDED
_FAIR_STREAK = 64


class Task(Entity, LinkMethods):
    """A task: ``Task(fn, *args, **kwargs)`` starts ``fn`` on the current node.

    ``fn`` is an ``async def`` function or a generator function; a parameter named
    ``task`` receives this ``Task``.  Use ``pycos.spawn(fn, ...)`` to pick the node
    explicitly.
    """

    __slots__ = (
        "__weakref__",
        "_alive",
        "_body",
        "_daemon",
        "_done",
        "_end_callbacks",
        "_exit",
        "_is_generator",
        "_links",
        "_mailbox",
        "_monitors",
        "_refusing",
        "_registered",
        "_scope",
        "_streak",
        "_suspender",
        "_task_id",
        "_thrown",
        "_trio_task",
        "_value",
        "_waiter",
    )

    _kind = "task"

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        from ._node import current_node

        node = current_node()
        if node._thread_id != get_ident():  # a plain thread: start it in the node's
            node._thread.call(self._start, node, fn, args, kwargs)
        else:
            self._start(node, fn, args, kwargs)

    # -- construction -------------------------------------------------------------

    def _start(
        self,
        node: Pycos,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        is_gen, task_at = _body_kind(fn)
        if task_at is not None and "task" not in kwargs:
            # The `task` parameter gets this Task wherever it stands: first positional
            # (native style) or a trailing `task=None` keyword (pycos style).
            if 0 <= task_at <= len(args):
                args = (*args[:task_at], self, *args[task_at:])
            else:
                kwargs["task"] = self
        node._check_open()
        body = fn(*args, **kwargs)
        self._bind(node, getattr(fn, "__name__", None) or type(fn).__name__)
        self._task_id = node._task_table.new_id()
        self._is_generator = is_gen
        self._body = body
        # Made when first needed (most tasks never need some of them): an idle task
        # should cost little more than its trio task.
        self._mailbox: deque[Any] | None = None
        self._refusing = False  # its mailbox has been full (logged once)
        self._waiter: Parked | None = None  # parked in receive
        self._trio_task: trio.lowlevel.Task | None = None
        self._scope = trio.CancelScope()
        self._alive = True
        self._daemon = False
        # Monitor -> the peer that asked for it (None: this node's code), in the
        # order added; a dict, so a peer's requests cost a lookup each, not a scan.
        self._monitors: dict[Task, bytes | None] | None = None
        self._registered: set[str] | None = None
        self._done: trio.Event | None = None
        self._streak = 0
        self._suspender: Parked | None = None  # while in suspend() / sleep()
        self._thrown: BaseException | None = None
        # (A dict, in the order added: a peer's parked finish() requests each add
        # one and take it back, a lookup each.)
        self._end_callbacks: dict[Callable[[], None], None] | None = None
        self._value: Any = None
        self._exit: tuple[object, object] | None = None
        self._links: _links.LinkState | None = None  # links, trap_exits (_links.py)
        node._task_table.adopt(self)

    def _init_reference(self, ref: Ref) -> None:
        self._task_id = int(ref.ident)

    def _ident(self) -> int:
        return self._task_id

    def __repr__(self) -> str:
        # A reference's name is a peer's word: escaped, as everything from outside
        # that may reach a log line.
        name = self._name if self._local else escape(self._name, 100)
        return f"{name}/{self._task_id}@{self._location}"

    # -- running ------------------------------------------------------------------

    async def _run(self) -> None:
        _current_node.set(self._node)
        self._trio_task = _current_task()
        status: tuple[object, object] = (GeneratorExit, None)
        body = self._body
        try:
            with self._scope:
                if self._scope.cancel_called:
                    # Terminated before it ran: do not run any of the body.
                    body.close()
                elif self._is_generator:
                    status = (StopIteration, await run_generator(body))
                else:
                    status = (StopIteration, await body)
        except Exception as exc:
            status = self._failed(exc)
        except BaseExceptionGroup as group:
            # The node cancelled the task while a nursery of its own also failed:
            # the failure is the task's exit status; the cancellation goes on.
            cancelled, rest = group.split(trio.Cancelled)
            if rest is not None and not rest.subgroup((KeyboardInterrupt, SystemExit)):
                status = self._failed(rest)
                if cancelled is not None:
                    raise cancelled from None
                return
            raise
        finally:
            self._body = None
            self._end(status)

    def _failed(self, exc: BaseException) -> tuple[object, object]:
        text = "".join(traceback.format_exception(exc))
        log.warning("uncaught exception in task %r:\n%s", self, text)
        return (type(exc), text)

    def _end(self, status: tuple[object, object]) -> None:
        self._alive = False
        self._exit = status
        kind, value = status
        if kind is StopIteration:
            self._value = value
        elif kind is not GeneratorExit:
            # pycos's rule: finish() of a task that failed gives its MonitorStatus.
            self._value = MonitorStatus(self, kind, value)
        self._mailbox = None
        self._node._forget(self)
        if self._done is not None:
            self._done.set()
        callbacks, self._end_callbacks = self._end_callbacks, None
        for callback in callbacks or ():
            callback()
        monitors, self._monitors = self._monitors, None
        if monitors:
            holds = self._node._remote.holds
            for monitor, asked_by in monitors.items():
                if asked_by is not None or not monitor._local:
                    holds.remove(self, monitor, asked_by)
                if self._tell(monitor, asked_by) < 0:
                    log.debug("monitor %r of %r is gone", monitor, self)
        if self._links is not None:
            _links.ended(self)  # after the monitors: they hear the cause first

    def _tell(self, monitor: Task, asked_by: bytes | None = None) -> int:
        """Send this ended task's exit status to ``monitor``: 0 / -1.  ``asked_by``:
        the peer that asked for this monitor, if one did (see ``_dials.py``)."""
        assert self._exit is not None
        kind, value = self._exit
        try:
            return self._status_to(monitor, MonitorStatus(self, kind, value), asked_by)
        except (TypeError, ValueError) as exc:
            # A remote monitor, and the exit value cannot travel: say so instead.
            status = MonitorStatus(self, type(exc), f"exit status not sent: {exc}")
            return self._status_to(monitor, status, asked_by)

    def _status_to(self, monitor: Task, status: MonitorStatus, asked_by: bytes | None) -> int:
        if asked_by is None or monitor._local:
            return monitor.send(status)
        # On the peer's behalf: the connections it may make this node open are few.
        return self._node._remote.task_send(monitor, status, asked_by)

    # -- messages -----------------------------------------------------------------

    def send(self, message: Any) -> int:
        """Queue ``message`` for this task: 0, or -1 if the task is not alive."""
        node = self._node
        if node._thread_id != get_ident():
            try:
                return node._thread.call(Task._send, self, message)
            except PycosError:
                return -1
        if not self._local:  # (_send's first line, here: a call less per remote send)
            return node._remote.task_send(self, message)
        return self._send(message)

    def _send(self, message: Any) -> int:
        """``send`` in the node's own thread (the library's internal callers are)."""
        if not self._local:
            return self._node._remote.task_send(self, message)
        if not self._alive:
            return -1
        if self._node._encode_local:
            message = self._node._wire_copy(message)
        waiter = self._waiter
        if waiter is not None:
            # Parked in receive, so the mailbox is empty: the message rides on the
            # wake-up (its order is kept: anything sent after it waits in the mailbox).
            # A wait that has just timed out or been cancelled takes nothing: the
            # message waits in the mailbox for the next receive.
            self._waiter = None
            if waiter.wake(message):
                return 0
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = deque()
        elif len(mailbox) >= self._node._max_mailbox:
            return self._refuse()
        mailbox.append(message)
        return 0

    def _send_run(self, messages: list[Any]) -> bool:
        """``_send`` of each of ``messages`` in order, in one call (a peer's run of
        messages for this task): True.  False, having taken none of them, if they
        must go one at a time (the task is not a running one of this node, or the
        node copies local messages)."""
        if not self._local or not self._alive or self._node._encode_local:
            return False
        first = 0
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if waiter.wake(messages[0]):
                first = 1
                if len(messages) == 1:
                    return True  # (no queue made, as in _send)
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = deque()
        room = self._node._max_mailbox - len(mailbox)
        count = len(messages) - first
        if count <= room:
            mailbox.extend(messages if first == 0 else islice(messages, 1, None))
            return True
        room = max(room, 0)
        mailbox.extend(islice(messages, first, first + room))
        for _ in range(count - room):
            self._refuse()
        return True

    def _refuse(self) -> int:
        """A message for a full mailbox (``Limits.max_mailbox``): counted, logged
        once per task, and refused (-1)."""
        node = self._node
        node._task_table.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warning(
                "mailbox of task %r is full (%d messages, Limits.max_mailbox): messages "
                "to it are refused until it receives",
                self,
                node._max_mailbox,
            )
        return -1

    async def deliver(self, message: Any, timeout: float | None = None) -> int:
        """Put ``message`` in this task's mailbox: 1 when it is there, else 0."""
        check_timeout(timeout)
        if not self._local:
            return await self._node._remote.task_deliver(self, message, timeout)
        await trio.lowlevel.checkpoint()
        return 1 if self.send(message) == 0 else 0

    async def receive(self, timeout: float | None = None, alarm_value: Any = None) -> Any:
        """Next message in the mailbox; waits up to ``timeout`` (then ``alarm_value``)."""
        if self._trio_task is not _current_task():  # (None is never the current task)
            raise RuntimeError(f"only task {self!r} itself can receive its messages")
        if self._thrown is not None:
            self._raise_thrown()
        mailbox = self._mailbox
        if mailbox:
            # A backlog is drained without a full schedule point per message (the
            # fast path), but every _FAIR_STREAK messages the task yields, so one busy
            # receiver cannot starve the rest of its node.
            self._streak += 1
            if self._streak < _FAIR_STREAK:
                await _checkpoint_if_cancelled()
            else:
                self._streak = 0
                await trio.lowlevel.checkpoint()
            return mailbox.popleft()
        self._streak = 0
        if mailbox is not None:
            self._mailbox = None  # drained: an idle task keeps no queue
        if timeout is not None:
            check_timeout(timeout)
        waiter = self._waiter = Parked(alarm_value)
        return await waiter.wait(self._node._timer, timeout)

    recv = receive

    async def sleep(self, timeout: float = 0) -> Any:
        """Suspend this task for ``timeout`` seconds; returns 0 (or the value given to
        ``resume()``, which wakes it early)."""
        return await self.suspend(timeout, 0)

    async def suspend(self, timeout: float | None = None, alarm_value: Any = None) -> Any:
        """Suspend this task until another calls ``resume(update)`` (returns
        ``update``) or ``timeout`` seconds pass (returns ``alarm_value``)."""
        check_timeout(timeout)
        if self._trio_task is not _current_task():  # (None is never the current task)
            raise RuntimeError(f"only task {self!r} itself can suspend")
        if self._thrown is not None:
            self._raise_thrown()
        # The node's timer, as for receive: no cancel scope per suspended task (an
        # idle task is a pycos program's commonest state).
        waiter = self._suspender = Parked(alarm_value)
        try:
            return await waiter.wait(self._node._timer, timeout)
        finally:
            if self._suspender is waiter:
                self._suspender = None

    @from_any_thread
    def resume(self, update: Any = None) -> int:
        """Wake this task from ``suspend``/``sleep`` with ``update``: 0, or -1 if it
        is not suspended."""
        waiter = self._suspender
        if not self._local or waiter is None:
            return -1
        self._suspender = None
        return 0 if waiter.wake(update) else -1

    wakeup = resume

    @from_any_thread
    def throw(self, *args: Any) -> int:
        """Raise an exception in this task: at once if it waits in ``receive``,
        ``suspend`` or ``sleep``, else when it next calls one of them.  Arguments as
        pycos's: an exception, ``(type, value[, traceback])``, or a type and value.
        0, or -1 if the task is not alive."""
        if not self._local or not self._alive:
            return -1
        exc = _exception_from(args)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if waiter.throw(exc):
                return 0
        suspender = self._suspender
        if suspender is not None:
            self._suspender = None
            if suspender.throw(exc):
                return 0
        self._thrown = exc
        return 0

    def _raise_thrown(self) -> None:
        exc, self._thrown = self._thrown, None
        assert exc is not None
        raise exc

    def value(self, timeout: float | None = None) -> Any:
        """From a plain thread (never a task): wait for the task to end and return
        what ``finish()`` returns."""
        if self._local and not self._alive:  # (its node may have stopped since)
            return self._value
        return self._node._thread.wait(self.finish, timeout)

    # Hot swapping is pycos's, for generator tasks: the compat layer provides it.
    def hot_swappable(self, flag: bool) -> int:
        hook = _generator.swap_hook
        if hook is None:
            raise PycosError("hot swapping is provided by triopycos.compat (pycos programs)")
        return hook.hot_swappable(self, flag)

    def hot_swap(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> int:
        hook = _generator.swap_hook
        if hook is None:
            raise PycosError("hot swapping is provided by triopycos.compat (pycos programs)")
        return hook.hot_swap(self, fn, *args, **kwargs)

    # -- names --------------------------------------------------------------------

    @from_any_thread
    def register(self, name: str | None = None) -> int:
        """Register under ``name`` (default: the task's name): 0, or -1 if taken."""
        if not self._local:
            log.warning("register is not allowed for remote task %r", self)
            return -1
        if name is None:
            name = self._name
        if not isinstance(name, str) or not name:
            raise TypeError(f"task name must be a non-empty str, not {name!r}")
        if not self._alive:
            return -1
        return self._node._names.register("task", name, self)

    @from_any_thread
    def unregister(self, name: str | None = None) -> int:
        """Remove the registration under ``name`` (default: the task's name): 0 / -1."""
        if not self._local:
            return -1
        return self._node._names.unregister("task", self._name if name is None else name, self)

    @staticmethod
    async def locate(
        name: str, location: Location | None = None, timeout: float | None = None
    ) -> Task | None:
        """A reference to the task registered as ``name``, or None.

        Looks on the current node and its peers, including peers that appear while
        it looks, until ``timeout`` passes (None: until found, as pycos; 0: ask
        once).  With ``location``, asks only the node there, once (``timeout``
        bounds the request; on that node it waits for the name up to ``timeout``).
        """
        from ._node import current_node

        found = await current_node()._locate("task", name, location, timeout)
        assert found is None or isinstance(found, Task)
        return found

    # -- lifetime -----------------------------------------------------------------

    def is_alive(self) -> bool:
        """True while the task runs (for a remote reference: while it is known to)."""
        if not self._local:
            return self._node._remote.task_is_alive(self)
        return self._alive

    @from_any_thread
    def set_daemon(self, flag: bool = True) -> int:
        """A daemon task does not keep its node's ``async with`` block open: 0 / -1."""
        if not self._local or not self._alive:
            return -1
        flag = bool(flag)
        if flag != self._daemon:
            self._daemon = flag
            self._node._task_table.daemon_changed(flag)
        return 0

    @from_any_thread
    def terminate(self) -> int:
        """Cancel the task: 0, or -1 if it is not alive.  Monitors see GeneratorExit."""
        if not self._local:
            return self._node._remote.task_terminate(self)
        if not self._alive:
            return -1
        self._scope.cancel()
        return 0

    async def finish(self, timeout: float | None = None) -> Any:
        """Wait for the task to end and return its value (None on timeout).

        A task that raised gives its ``MonitorStatus``; a terminated one gives None.
        """
        check_timeout(timeout)
        if not self._local:
            return await self._node._remote.task_finish(self, timeout)
        if self._trio_task is not None and self._trio_task is _current_task():
            raise RuntimeError(f"task {self!r} cannot wait for its own end")
        if self._alive:
            if self._done is None:
                self._done = trio.Event()
            if timeout is None:
                await self._done.wait()  # (no cancel scope: nothing to time out)
            else:
                with trio.move_on_after(timeout):
                    await self._done.wait()
            if self._alive:
                return None
        else:
            await trio.lowlevel.checkpoint()
        return self._value

    __call__ = finish  # pycos's: ``yield task()`` waits for the task's end

    async def monitor(self, observe: Task) -> int:
        """Make this task a monitor of ``observe``: its exit status will arrive here as
        a ``MonitorStatus`` message.  0, or -1 if that is not possible.

        If ``observe`` has already ended, its status is sent at once, so no exit is
        ever missed by monitoring late.
        """
        if not isinstance(observe, Task):
            raise TypeError(f"monitor() needs a Task, not {type(observe).__name__}")
        if not observe._local:
            return await self._node._remote.task_monitor(self, observe)
        await trio.lowlevel.checkpoint()
        return observe._add_monitor(self)

    @from_any_thread
    def notify(self, monitor: Task) -> int:
        """Make ``monitor`` (local or remote) a monitor of this task: 0 / -1."""
        if not isinstance(monitor, Task):
            raise TypeError(f"notify() needs a Task, not {type(monitor).__name__}")
        if not self._local:
            return -1
        return self._add_monitor(monitor)

    def _when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` synchronously when the task ends (now if it has): replies
        to peers are queued at the very moment of the end, ahead of any goodbye."""
        if self._alive:
            if self._end_callbacks is None:
                self._end_callbacks = {}
            self._end_callbacks[callback] = None
        else:
            callback()

    def _forget_when_done(self, callback: Callable[[], None]) -> None:
        if self._end_callbacks is not None:
            self._end_callbacks.pop(callback, None)

    def _add_monitor(self, monitor: Task, asked_by: bytes | None = None) -> int:
        """Make ``monitor`` a monitor of this task: 0, or -1 if the task has ended
        and its status cannot be sent, or if ``asked_by`` (the peer that asks, None
        for this node's own code) already holds all it may (see ``_holds.py``)."""
        if self._alive:
            monitors = self._monitors
            if monitors is None:
                monitors = self._monitors = {}
            elif monitor in monitors:
                return 0
            if asked_by is not None or not monitor._local:
                holds = self._node._remote.holds
                if asked_by is not None and not holds.admit(asked_by):
                    return -1
                holds.add(self, monitor, asked_by)
            monitors[monitor] = asked_by
            return 0
        return 0 if self._tell(monitor, asked_by) == 0 else -1

    def _drop_node(self, node_id: bytes) -> None:
        """Forget the monitors that live on, or were asked for by, the node
        ``node_id``: it was lost (``_holds.PeerHolds.lost``)."""
        monitors = self._monitors
        if not monitors:
            return
        holds = self._node._remote.holds
        for monitor, asked_by in [(m, a) for m, a in monitors.items() if involves(m, a, node_id)]:
            del monitors[monitor]
            holds.remove(self, monitor, asked_by)
