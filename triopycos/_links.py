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

Partners on other nodes: the link is held on both nodes, indexed by the partner's
node (``_remote_links.py``, which also says how it travels).  ``link`` asks the
partner's node (TASK_LINK), ``unlink`` and ``ended`` tell it (TASK_UNLINK, with the
exit for ``ended``), and a lost node applies ``PeerLost`` through ``exit_signal`` to
the local partners of its tasks.  Values in ``LinkState.partners`` are the remote
partner's node id (None for a partner of this node), so a link is known remote
without asking the partner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import trio

from ._threads import get_ident
from .protocol.printable import describe
from .values import MonitorStatus

if TYPE_CHECKING:
    from ._task import Task

__all__ = [
    "Asking",
    "LinkMethods",
    "LinkState",
    "ended",
    "exit_signal",
    "link",
    "link_from_peer",
    "trap_exits",
    "unlink",
    "unlink_from_peer",
]

log = logging.getLogger("triopycos.task")


class LinkState:
    """One task's links and whether it traps exits (``Task._links``)."""

    __slots__ = ("asking", "partners", "trapping")

    def __init__(self) -> None:
        # Partner -> its node id if it is a task of another node (None: of this
        # node), in the order linked.
        self.partners: dict[Task, bytes | None] = {}
        self.trapping = False
        # Remote partners whose node has not answered the link request yet: a second
        # link() with one waits for that answer (made only when needed).
        self.asking: dict[Task, Asking] | None = None


class Asking:
    """A link request under way: its answer, once the partner's node gave it."""

    __slots__ = ("answered", "result")

    def __init__(self) -> None:
        self.answered = trio.Event()
        self.result = -1


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
    state = _state(task)
    if other in state.partners:
        asking = state.asking.get(other) if state.asking else None
        if asking is not None:
            # The first link() is still asking the partner's node: same answer.
            await asking.answered.wait()
            return asking.result
        return 0  # linking twice is linking once
    if not other._local:
        return await task._node._remote.task_link(task, other)
    if other._node is not task._node:
        # A task object of another node of this process (the virtual network):
        # references travel in messages; the object itself is not one.
        log.warning("link of %r with %r refused: a task of another node", task, other)
        return -1
    if not other._alive:
        # Linking late misses nothing: the ended task's exit applies now.
        assert other._exit is not None
        kind, value = other._exit
        exit_signal(task, MonitorStatus(other, kind, value))
        return 0
    state.partners[other] = None
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
    else:
        task._node._remote.task_unlink(other, task, None)
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
        status = MonitorStatus(task, kind, value)
        if partner._local:
            partner_state = partner._links
            if partner_state is not None:
                partner_state.partners.pop(task, None)
            exit_signal(partner, status)
        else:
            task._node._remote.task_unlink(partner, task, status)


def link_from_peer(task: Task, partner: Task) -> int:
    """A peer links its task ``partner`` with the local, running ``task``
    (TASK_LINK): 0, or -1 if the peer holds all the links it may."""
    state = _state(task)
    if partner in state.partners:
        return 0
    if not task._node._remote.links.add(task, partner, asked=True):
        return -1
    state.partners[partner] = partner._node_id
    return 0


def unlink_from_peer(task: Task, partner: Task, exit: MonitorStatus | None) -> None:
    """A peer says the link of its task ``partner`` with the local ``task`` is gone
    (TASK_UNLINK): unlinked, or, with ``exit``, because ``partner`` ended so."""
    state = task._links
    if state is None or state.partners.pop(partner, None) is None:
        return  # not linked (any more): an unlink or an end crossed this one
    task._node._remote.links.remove(task, partner)
    if exit is not None:
        # The status names the peer's task as the peer sent it; only its kind and
        # value are the peer's word.
        exit_signal(task, MonitorStatus(partner, exit.type, exit.value))


def exit_signal(task: Task, status: MonitorStatus) -> None:
    """Apply a linked task's exit ``status`` to the local task ``task``: a message if
    it traps exits, else termination if the exit was abnormal.  Also called for a
    peer's TASK_UNLINK that carries an exit and, with ``PeerLost``, for the local
    partners of a lost node's tasks (so ``status`` may hold a peer's values: they are
    logged only as type names and escaped excerpts)."""
    if not task._alive:
        return
    state = task._links
    if state is not None and state.trapping:
        if task._send(status) < 0:
            log.warning("exit of %r not delivered to %r (mailbox full)", status.info, task)
        return
    if status.type is not StopIteration:
        kind = status.type
        how = kind.__name__ if isinstance(kind, type) else describe(kind)
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

        ``other`` may be a task of another node: the link is then held on both
        nodes, and a lost node counts as an abnormal end (``PeerLost``).

        0, or -1 if this task is remote or has ended, ``other`` is this task, or
        ``other`` is a remote task that cannot be linked (ended, unknown, its node
        unreachable, or that node refuses more links of this one).
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
            result: int = task._node._thread.call(trap_exits, task, flag)
            return result
        return trap_exits(task, flag)
