"""What the supervision tests share: a record of every incarnation of the children
(``Lives``), the children's body (``make_worker``), nodes that can crash while the
test goes on (``Nodes``) and a monitor that keeps what it hears (``Statuses``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from triopycos import MonitorStatus, Pycos, Supervisor, Task
from triopycos._context import current_node_var
from triopycos.testing import VirtualNetwork

__all__ = [
    "WAIT",
    "Lives",
    "Nodes",
    "Statuses",
    "known",
    "make_worker",
    "open_nodes",
    "use",
]

#: The longest any test waits for something (virtual seconds).
WAIT = 120.0


class Lives:
    """Every incarnation of every child, as the children themselves report it: when
    each started and ended, on which node, and which are running now."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, Hashable, Task]] = []
        self.ends: list[tuple[float, Hashable, Task]] = []
        self.live: dict[Hashable, list[Task]] = {}
        self._changed = trio.Event()

    def started(self, name: Hashable, task: Task) -> None:
        self.starts.append((trio.current_time(), name, task))
        self.live.setdefault(name, []).append(task)
        self._poke()

    def ended(self, name: Hashable, task: Task) -> None:
        self.ends.append((trio.current_time(), name, task))
        self.live[name].remove(task)
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def count(self, name: Hashable) -> int:
        """How many incarnations of ``name`` have started."""
        return sum(1 for _, n, _ in self.starts if n == name)

    def running(self) -> dict[Hashable, int]:
        """Child name -> live incarnations, for those with any."""
        return {name: len(tasks) for name, tasks in self.live.items() if tasks}

    def current(self, name: Hashable) -> Task:
        (task,) = self.live[name]
        return task

    async def until(self, check: Callable[[], bool], limit: float = WAIT) -> float:
        """Wait until ``check()`` holds (re-checked on every start and end); the
        time it took."""
        start = trio.current_time()
        with trio.fail_after(limit):
            while not check():
                await self._changed.wait()
        return trio.current_time() - start

    async def started_times(self, name: Hashable, count: int) -> None:
        await self.until(lambda: self.count(name) >= count)


async def known(sup: Supervisor, *names: Hashable, limit: float = WAIT) -> None:
    """Wait until ``sup`` knows a current task for each child named (a remote
    child runs before the reply to the call that started it arrives)."""
    with trio.fail_after(limit):
        # Polled (every virtual millisecond): a supervisor signals no event of its own.
        while any(sup.children().get(name) is None for name in names):  # noqa: ASYNC110
            await trio.sleep(0.001)


def make_worker(lives: Lives) -> Callable[..., Any]:
    """A child body recording itself in ``lives``; it obeys messages: ``"fail"``
    (raise), ``"return"`` (return ``"done"``); with ``register``, it registers its
    name first (as a service does).  Usable as an RPS method: its arguments travel."""

    async def worker(task: Task, name: str, register: bool = False) -> str:
        lives.started(name, task)
        try:
            if register:
                assert task.register(name) == 0
            while True:
                message = await task.receive()
                if message == "fail":
                    raise RuntimeError(f"{name} was told to fail")
                if message == "return":
                    return "done"
        finally:
            lives.ended(name, task)

    return worker


class Statuses:
    """A daemon task on ``node`` monitoring ``observe``, keeping what it hears."""

    def __init__(self, node: Pycos, observe: Task) -> None:
        self.got: list[tuple[float, MonitorStatus]] = []
        self._changed = trio.Event()
        self._observe = observe
        self.task = node.spawn(self._run)

    async def _run(self, task: Task) -> None:
        task.set_daemon()
        assert await task.monitor(self._observe) == 0
        while True:
            status = await task.receive()
            self.got.append((trio.current_time(), status))
            self._changed.set()
            self._changed = trio.Event()

    async def first(self, limit: float = WAIT) -> MonitorStatus:
        with trio.fail_after(limit):
            while not self.got:
                await self._changed.wait()
        return self.got[0][1]


class Nodes:
    """Nodes of one virtual network, each running in a task of its own so that a
    crash (``net.crash(node)``) ends only that node while the test goes on."""

    def __init__(self, net: VirtualNetwork, nursery: trio.Nursery) -> None:
        self.net = net
        self._nursery = nursery
        self._stops: dict[str, trio.Event] = {}
        self.gone: dict[str, trio.Event] = {}

    async def open(self, name: str, **kwargs: Any) -> Pycos:
        opened: list[Pycos] = []
        ready = trio.Event()
        stop = self._stops[name] = trio.Event()
        gone = self.gone[name] = trio.Event()

        async def run() -> None:
            try:
                async with self.net.open_pycos(name=name, **kwargs) as node:
                    opened.append(node)
                    ready.set()
                    await stop.wait()
                    node.terminate()  # supervisors never end by themselves
            finally:
                gone.set()

        self._nursery.start_soon(run)
        await ready.wait()
        return opened[0]

    async def close(self, name: str) -> None:
        self._stops[name].set()
        await self.gone[name].wait()

    async def close_all(self) -> None:
        for name in list(self._stops):
            await self.close(name)


@contextmanager
def use(node: Pycos) -> Iterator[None]:
    """Make ``node`` the current node (what ``Supervisor(...)``, ``Task(...)`` and
    ``RPS(...)`` mean) for the test's own code, as its ``async with`` block would."""
    token = current_node_var.set(node)
    try:
        yield
    finally:
        current_node_var.reset(token)


@asynccontextmanager
async def open_nodes(seed: int, **net_kwargs: Any) -> AsyncIterator[Nodes]:
    async with VirtualNetwork(seed=seed, **net_kwargs) as net, trio.open_nursery() as nursery:
        nodes = Nodes(net, nursery)
        try:
            yield nodes
        finally:
            await nodes.close_all()
