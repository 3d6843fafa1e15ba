"""Messages about tasks: sending to one, delivering, terminating, monitoring,
linking, finishing, asking if alive, and an RPS task's pushed result (the table of
every kind is in ``messages.py``)."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from ..values import MonitorStatus
from . import wire
from .message_base import Encode, IsReference, OneWay, Request, _new
from .printable import describe
from .wire import Kind, MalformedMessage, NotByHand
from .wire import uint as _uint

__all__ = [
    "TaskAlive",
    "TaskDeliver",
    "TaskFinish",
    "TaskLink",
    "TaskMonitor",
    "TaskResult",
    "TaskSend",
    "TaskTerminate",
    "TaskUnlink",
]

# -- one-way messages ------------------------------------------------------------------


class _TaskSend(NamedTuple):
    task_id: int
    message: Any


class TaskSend(OneWay, _TaskSend):
    """``message`` for task ``task_id``'s mailbox."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_SEND

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            return b"\x83\x01" + _uint(self.task_id), encode(self.message)
        except NotByHand:
            return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskSend:
        if len(message) != 3:
            raise MalformedMessage("a task message is a task id (an int) and a message")
        return _new(TaskSend, (wire.task_id(message[1]), message[2]))


class _TaskTerminate(NamedTuple):
    task_id: int


class TaskTerminate(OneWay, _TaskTerminate):
    """End task ``task_id``."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_TERMINATE

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskTerminate:
        wire.check_count(message, 2)
        return _new(TaskTerminate, (wire.task_id(message[1]),))


class _TaskResult(NamedTuple):
    task_id: int
    value: Any


class TaskResult(OneWay, _TaskResult):
    """How task ``task_id``, started by the receiver's RPS call, ended."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_RESULT

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            return b"\x83\x10" + _uint(self.task_id), encode(self.value)
        except NotByHand:
            return b"", encode(self._wire(request_id))

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskResult:
        wire.check_count(message, 3)
        return _new(TaskResult, (wire.task_id(message[1]), message[2]))


# -- requests --------------------------------------------------------------------------


class _TaskDeliver(NamedTuple):
    task_id: int
    message: Any
    request_id: int = 0


class TaskDeliver(Request, _TaskDeliver):
    """Put ``message`` in task ``task_id``'s mailbox: answered 1 once it is there."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_DELIVER
    FAILURE: ClassVar[object] = 0

    def _encode(self, encode: Encode, request_id: int) -> tuple[bytes, bytes]:
        try:
            head = b"\x84\x02" + _uint(request_id) + _uint(self.task_id)
        except NotByHand:
            return b"", encode(self._wire(request_id))
        return head, encode(self.message)

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskDeliver:
        request_id = wire.request_id(message, 4)
        return _new(TaskDeliver, (wire.task_id(message[2]), message[3], request_id))


class _TaskMonitor(NamedTuple):
    task_id: int
    monitor: Any  # a task: the node's own class (see IsReference)
    request_id: int = 0


class TaskMonitor(Request, _TaskMonitor):
    """Tell ``monitor`` how task ``task_id`` ends: answered 0, or -1."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_MONITOR
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskMonitor:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        if not is_reference(message[3], "task"):
            raise MalformedMessage(f"the monitor is {describe(message[3])}")
        return _new(TaskMonitor, (task_id, message[3], request_id))


class _TaskLink(NamedTuple):
    task_id: int
    partner: Any  # a Task of the sending node
    request_id: int = 0


class TaskLink(Request, _TaskLink):
    """Link task ``task_id`` with ``partner``, a task of the sending node: answered
    0, or -1 (no such task here, or no room for the link)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_LINK
    FAILURE: ClassVar[object] = -1

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskLink:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        if not is_reference(message[3], "task"):
            raise MalformedMessage(f"the partner is {describe(message[3])}")
        return _new(TaskLink, (task_id, message[3], request_id))


class _TaskUnlink(NamedTuple):
    task_id: int
    partner: Any  # a Task of the sending node
    exit: MonitorStatus | None  # the partner's exit, if it ended


class TaskUnlink(OneWay, _TaskUnlink):
    """The link of task ``task_id`` with ``partner`` is gone: unlinked, or, with
    ``exit``, because the partner ended so."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_UNLINK

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskUnlink:
        wire.check_count(message, 4)
        task_id = wire.task_id(message[1])
        partner, exit = message[2], message[3]
        if not is_reference(partner, "task"):
            raise MalformedMessage(f"the partner is {describe(partner)}")
        if exit is not None and not (
            type(exit) is MonitorStatus and is_reference(exit.info, "task")
        ):
            raise MalformedMessage(f"the exit is {describe(exit)}")
        return _new(TaskUnlink, (task_id, partner, exit))


class _TaskFinish(NamedTuple):
    task_id: int
    timeout: float | None
    request_id: int = 0


class TaskFinish(Request, _TaskFinish):
    """Answered with task ``task_id``'s value once it ends (None after ``timeout``)."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_FINISH
    FAILURE: ClassVar[object] = None

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskFinish:
        request_id = wire.request_id(message, 4)
        task_id = wire.task_id(message[2])
        return _new(TaskFinish, (task_id, wire.timeout(message[3]), request_id))


class _TaskAlive(NamedTuple):
    task_id: int
    request_id: int = 0


class TaskAlive(Request, _TaskAlive):
    """Answered True if task ``task_id`` is running."""

    __slots__ = ()
    KIND: ClassVar[int] = Kind.TASK_ALIVE
    FAILURE: ClassVar[object] = False

    @staticmethod
    def _parse(message: list[Any], is_reference: IsReference) -> TaskAlive:
        request_id = wire.request_id(message, 3)
        return _new(TaskAlive, (wire.task_id(message[2]), request_id))
