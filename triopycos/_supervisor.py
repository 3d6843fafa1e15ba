"""``Supervisor`` and ``ChildSpec``: Erlang/OTP supervisors on triopycos tasks.

The object is a handle: the supervisor itself is a task (``Supervisor.task``, running
``_supervising.supervisor``) that monitors its children and restarts them; this
module holds what users build and read, ``_supervising.py`` the restart loop.
docs/supervision.md is the user's guide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Literal, cast, get_args

from ._rps import RPS
from ._task import Task
from ._task_arguments import _body_kind, check_timeout
from ._threads import get_ident
from .protocol.codec import default_types
from .values.errors import SupervisorGaveUp

__all__ = ["ChildSpec", "Restart", "Strategy", "Supervisor"]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]
_STRATEGIES: Final = frozenset(get_args(Strategy))
_RESTARTS: Final = frozenset(get_args(Restart))
#: Seconds a supervisor waits for a task child to end after terminating it, when its
#: spec does not say (a nested Supervisor child: no limit, it bounds its own).
DEFAULT_SHUTDOWN: Final = 5.0

# The library's other errors are registered in protocol/codec/registry.py; this one
# is registered here, by the module that raises it, under a fixed wire name.
default_types.register(SupervisorGaveUp, "triopycos.SupervisorGaveUp")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a ``Supervisor`` starts one child, and when it restarts it.

    ``start`` is one of:

    * a task function (``async def`` or generator): the child is
      ``Task(start, *args, **kwargs)`` on the supervisor's node;
    * an ``RPS`` (a reference from ``RPS.locate``, or a local one): the child is the
      task that ``await rps(*args, **kwargs)`` starts on the RPS's node;
    * the name of an RPS (``str``): located afresh (``RPS.locate(start,
      timeout=locate_timeout)``) at every start, so a child lost with one node
      restarts on another that serves the same name;
    * ``Supervisor`` (or a subclass): a nested supervisor,
      ``Supervisor(*args, **kwargs)`` on the supervisor's node.

    ``restart``: ``"permanent"`` (always restarted), ``"transient"`` (restarted only
    after an abnormal end: an exception, ``terminate()``, its node lost) or
    ``"temporary"`` (never; removed from ``children()`` when it ends).

    ``shutdown``: seconds to wait for the child to end after the supervisor
    terminates it (it then goes on without it); None: 5 s for a task, no limit for a
    nested ``Supervisor``; ``math.inf``: no limit.  ``locate_timeout``: for an RPS
    name, how long each start looks for it (a start that finds none counts as a
    failed restart).
    """

    child_id: Hashable
    start: Callable[..., Any] | RPS | str | type[Supervisor]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None
    restart: Restart = "permanent"
    _: KW_ONLY
    shutdown: float | None = None
    locate_timeout: float | None = 10.0

    def __post_init__(self) -> None:
        hash(self.child_id)  # TypeError for an id that cannot be a dict key
        start = self.start
        if isinstance(start, str):
            if not start:
                raise ValueError("an RPS name must not be empty")
        elif isinstance(start, type) and issubclass(start, Supervisor):
            pass
        elif not isinstance(start, RPS):
            try:
                _body_kind(cast("Callable[..., Any]", start))
            except TypeError:
                raise TypeError(
                    "ChildSpec start must be a task function (async def or generator), "
                    f"an RPS, an RPS name or Supervisor, not {start!r}"
                ) from None
        if not isinstance(self.args, tuple):
            raise TypeError(f"ChildSpec args must be a tuple, not {type(self.args).__name__}")
        if self.kwargs is not None and not isinstance(self.kwargs, Mapping):
            raise TypeError(f"ChildSpec kwargs must be a mapping, not {self.kwargs!r}")
        if self.restart not in _RESTARTS:
            raise ValueError(f"restart must be one of {sorted(_RESTARTS)}, not {self.restart!r}")
        if self.shutdown is not None:
            check_timeout(self.shutdown)
        check_timeout(self.locate_timeout)

    def _shutdown(self) -> float:
        """The seconds to wait for this child's end after terminating it."""
        if self.shutdown is not None:
            return self.shutdown
        if isinstance(self.start, type):
            return math.inf
        return DEFAULT_SHUTDOWN


class Supervisor:
    """``Supervisor(specs, strategy="one_for_one", max_restarts=3, max_seconds=5.0)``
    starts a supervisor task on the current node (as ``Task(...)`` does), which starts
    the children of ``specs`` (``ChildSpec``) in order and restarts them when they end:

    * ``"one_for_one"``: only the child that ended;
    * ``"one_for_all"``: all children (the others stopped in reverse order, then all
      started in order);
    * ``"rest_for_one"``: the child that ended and those started after it.

    More than ``max_restarts`` restarts within ``max_seconds`` (trio time) and the
    supervisor gives up: it ends every child (in reverse order) and ends with
    ``SupervisorGaveUp``, so a supervisor supervising it sees it fail.  When the
    supervisor's task ends in any way (``terminate()``, giving up, its node
    closing) its children are ended first.
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_max_restarts",
        "_max_seconds",
        "_specs",
        "_strategy",
        "_task",
    )

    def __init__(
        self,
        specs: Iterable[ChildSpec],
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> None:
        from ._supervising import supervisor

        specs = tuple(specs)
        ids = set()
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"a Supervisor's specs are ChildSpec objects, not {spec!r}")
            if spec.child_id in ids:
                raise ValueError(f"child id {spec.child_id!r} is used twice")
            ids.add(spec.child_id)
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(_STRATEGIES)}, not {strategy!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
        if (
            isinstance(max_seconds, bool)
            or not isinstance(max_seconds, (int, float))
            or not max_seconds > 0
        ):
            raise ValueError(f"max_seconds must be a number > 0, not {max_seconds!r}")
        self._specs = specs
        self._strategy: Strategy = strategy
        self._max_restarts = max_restarts
        self._max_seconds = float(max_seconds)
        # Child id -> its task (None while it restarts, or after a transient child
        # ended normally), in the specs' order; kept by the supervisor task.
        self._children: dict[Hashable, Task | None] = {spec.child_id: None for spec in specs}
        self._task = Task(supervisor, self)

    @property
    def task(self) -> Task:
        """The supervisor's own task: monitor it, link it, supervise it."""
        return self._task

    def children(self) -> dict[Hashable, Task | None]:
        """Child id -> the child's current task, or None while it is being restarted
        (or after a transient child ended normally), in the specs' order.  Empty once
        the supervisor has ended."""
        node = self._task._node
        if node._thread_id != get_ident():
            children: dict[Hashable, Task | None] = node._thread.call(self.children)
            return children
        if not self._task._alive:
            return {}
        return dict(self._children)

    def terminate(self) -> int:
        """End the supervisor: its children are ended first (``terminate()`` of its
        task).  0, or -1 if it has already ended."""
        return self._task.terminate()

    def __repr__(self) -> str:
        return f"<Supervisor {self._strategy} {list(self._children)} {self._task!r}>"
