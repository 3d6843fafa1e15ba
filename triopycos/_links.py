"""Links between tasks (Erlang's ``link``): ``await task.link(other)``,
``await task.unlink(other)``, ``task.trap_exits(flag)``.

Rules (docs/supervision.md says the same for users):

* A link is symmetric and held on both sides: each task's ``LinkState`` names its
  partners.  Linking twice is linking once; ``unlink`` removes both sides at once, so
  no exit of a partner reaches a task after its ``unlink`` returned.
* When a task ends, every partner gets its exit: the very ``MonitorStatus`` its
  monitors get (``exit_signal``).  A partner that traps exits receives it as a
  message (normal returns too, as Erlang's ``{'EXIT', Pid, normal}``); any other
  partner is terminated when the end was abnormal (anything but ``StopIteration``:
  an exception, ``GeneratorExit`` from ``terminate()``, ``PeerLost``), and left alone
  when it was a return.  A terminated partner's own monitors see ``GeneratorExit``,
  as for ``terminate()``, and its partners go on in turn: a failure spreads through
  a web of linked tasks and stops at the tasks that trap exits.
* An exit is told once: ending dissolves the task's links on both sides.
* Linking with a task that has already ended applies its exit at once, so linking
  late misses nothing (as ``monitor`` does).

Where this plugs into ``Task``: the ``_links`` slot (None until the task links or
traps exits) and one call at the end of ``Task._end`` (``ended``).  Monitors are
untouched: a link is not a monitor.

Remote partners are the next phase (the peer session gains a LINK/UNLINK request
pair; see docs/supervision.md, "Links across nodes").  The places that change are
marked: ``link``/``unlink`` ask the partner's node, ``ended`` tells a remote partner
with an UNLINK that carries the exit, and a lost node applies ``PeerLost`` through
``exit_signal`` to the local partners of its tasks.  Until then linking with a
remote task returns -1 and says so in the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import trio

from ._threads import get_ident
from .values import MonitorStatus

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["LinkMethods", "LinkState", "ended", "exit_signal", "link", "trap_exits", "unlink"]

log = logging.getLogger("triopycos.task")


class LinkState:
    """One task's links and whether it traps exits (``Task._links``)."""

    __slots__ = ("partners", "trapping")

    def __init__(self) -> None:
        # Partner -> the peer that asked for the link (None: this node's own code),
        # in the order linked: the same shape as Task._monitors, so that a lost
        # node's links can be found and capped as its monitors are.
        self.partners: dict[Task, bytes | None] = {}
        self.trapping = False


def _state(task: Task) -> LinkState:
    state = task._links
    if state is None:
        state = task._links = LinkState()
    return state


def _check(other: object, verb: str) -> None:
    from ._task import Task

    if not isinstance(other, Task):
        raise TypeError(f"{verb}() needs a Task, not {type(other).__name__}")


async def link(task: Task, other: Task) -> int:
    """``task.link(other)``: 0, or -1 if the link cannot be made (see ``Task.link``)."""
    _check(other, "link")
    await trio.lowlevel.checkpoint()
    if not task._local or not task._alive or other == task:
        return -1
    if not other._local or other._node is not task._node:
        # Phase 2: record the link here, then a LINK request to other's node.
        log.warning(
            "link of %r with %r refused: links between tasks of different nodes are "
            "not supported yet (local links only; see docs/supervision.md)",
            task,
            other,
        )
        return -1
    if not other._alive:
        # Linking late misses nothing: the ended task's exit applies now.
        assert other._exit is not None
        kind, value = other._exit
        exit_signal(task, MonitorStatus(other, kind, value))
        return 0
    _state(task).partners[other] = None
    _state(other).partners[task] = None
    return 0


async def unlink(task: Task, other: Task) -> int:
    """``task.unlink(other)``: 0, or -1 if they were not linked."""
    _check(other, "unlink")
    await trio.lowlevel.checkpoint()
    if not task._local:
        return -1
    state = task._links
    if state is None or other not in state.partners:
        return -1
    del state.partners[other]
    if other._local:
        other_state = other._links
        if other_state is not None:
            other_state.partners.pop(task, None)
    # Phase 2, a remote partner: an UNLINK (without an exit) to its node.
    return 0


def trap_exits(task: Task, flag: bool) -> int:
    """``task.trap_exits(flag)``: 0, or -1 for a remote or ended task."""
    if not task._local or not task._alive:
        return -1
    _state(task).trapping = bool(flag)
    return 0


def ended(task: Task) -> None:
    """``task`` has ended (called at the end of ``Task._end``, its exit set): each
    partner gets the exit, and the links are gone on both sides."""
    state = task._links
    task._links = None
    if state is None or not state.partners:
        return
    assert task._exit is not None
    kind, value = task._exit
    for partner in state.partners:
        if partner._local:
            partner_state = partner._links
            if partner_state is not None:
                partner_state.partners.pop(task, None)
            exit_signal(partner, MonitorStatus(task, kind, value))
        # Phase 2, a remote partner: an UNLINK carrying the exit to its node, whose
        # handler calls exit_signal there.


def exit_signal(task: Task, status: MonitorStatus) -> None:
    """Apply a linked task's exit ``status`` to the local task ``task``: a message if
    it traps exits, else termination if the exit was abnormal.  (Phase 2 calls this
    for an UNLINK that carries an exit and, with ``PeerLost``, for the local partners
    of a lost node's tasks.)"""
    if not task._alive:
        return
    state = task._links
    if state is not None and state.trapping:
        if task._send(status) < 0:
            log.warning("exit of %r not delivered to %r (mailbox full)", status.info, task)
        return
    if status.type is not StopIteration:
        how = getattr(status.type, "__name__", status.type)
        log.info("task %r terminated: linked task %r ended (%s)", task, status.info, how)
        task.terminate()


class LinkMethods:
    """``Task``'s link methods (a base class of ``Task``, so that ``_task.py`` holds
    only the hooks)."""

    __slots__ = ()

    async def link(self, other: Task) -> int:
        """Link this task with ``other``, both ways: when either ends abnormally (an
        exception, ``terminate()``, its node lost) the other is terminated, unless it
        traps exits (``trap_exits``), in which case it receives the exit as a
        ``MonitorStatus`` message.  A normal return ends the link without
        terminating anyone.  If ``other`` has already ended, its exit applies now.

        0, or -1 if this task is remote or has ended, ``other`` is this task, or
        ``other`` is a task of another node (not supported yet: docs/supervision.md).
        """
        return await link(cast("Task", self), other)

    async def unlink(self, other: Task) -> int:
        """Remove the link with ``other`` (both ways): 0, or -1 if there was none."""
        return await unlink(cast("Task", self), other)

    def trap_exits(self, flag: bool = True) -> int:
        """With ``flag`` set, the exits of linked tasks arrive as ``MonitorStatus``
        messages (normal returns too) instead of terminating this task: 0, or -1 if
        the task is remote or has ended."""
        task = cast("Task", self)
        if task._node._thread_id != get_ident():
            result: int = task._node._call_in_loop(trap_exits, task, flag)
            return result
        return trap_exits(task, flag)
