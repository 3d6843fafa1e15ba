"""Helpers shared by the tests that run nodes: on 127.0.0.1, on the virtual network,
or on either through the ``cluster`` fixture (``conftest.py``)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import trio

from triopycos import Location, PeerStatus, Pycos, Task, open_pycos
from triopycos._context import current_node_var
from triopycos.protocol.auth import derive_key
from triopycos.protocol.handshake import Handshake
from triopycos.services.peer import PeerConnection
from triopycos.testing import VirtualNetwork

__all__ = [
    "PeerLog",
    "connection",
    "current",
    "handshaken",
    "locate",
    "loopback_node",
    "server",
    "sink",
    "virtual_pair",
    "wait_for",
    "waiting_target",
    "zombie",
]


def loopback_node(name: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Pycos]:
    """A node on 127.0.0.1, any free port, no discovery (``kwargs`` override)."""
    args: dict[str, Any] = {
        "name": name,
        "node": "127.0.0.1",
        "tcp_port": 0,
        "discover_peers": False,
        "secret": "test-secret",
    }
    return open_pycos(**(args | kwargs))


@contextlib.asynccontextmanager
async def virtual_pair(
    seed: int = 1, *, peered: bool = True, **kwargs: Any
) -> AsyncIterator[tuple[VirtualNetwork, Pycos, Pycos]]:
    """Nodes ``a`` and ``b`` on a new virtual network (``kwargs`` for both), ``b``
    peered with ``a`` unless ``peered=False``."""
    async with (
        VirtualNetwork(seed=seed) as net,
        net.open_pycos(name="a", **kwargs) as a,
        net.open_pycos(name="b", **kwargs) as b,
    ):
        if peered:
            assert await b.peer(a.location) == 0
        yield net, a, b


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds (for what has no event to wait on: the file
    system, another process, another node's counters), at most ``timeout`` s."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


@contextlib.contextmanager
def current(node: Pycos) -> Iterator[None]:
    """Make ``node`` the current node (what ``Task(...)``, ``Channel(...)``,
    ``RPS(...)`` and ``Supervisor(...)`` mean) for the test's own code, as its
    ``async with`` block would."""
    token = current_node_var.set(node)
    try:
        yield
    finally:
        current_node_var.reset(token)


def connection(node: Pycos, other: Pycos | Location | None = None) -> PeerConnection:
    """``node``'s connection to ``other`` (its only one if None).  Internal: for tests
    of the session itself, which write raw messages or drop a connection without a
    goodbye (no public API does either)."""
    assert node._peers is not None
    if other is None:
        (conn,) = node._peers.by_id.values()
        return conn
    found = node._peers.find(other.location if isinstance(other, Pycos) else other)
    assert found is not None
    return found


# -- tasks ----------------------------------------------------------------------------


async def server(task: Task) -> list[Any]:
    """Registered as ``server_task``: collects messages until a None."""
    task.register("server_task")
    got = []
    while (msg := await task.receive()) is not None:
        got.append(msg)
    return got


async def sink(task: Task) -> None:
    """A daemon registered as ``sink`` that reads and forgets every message."""
    task.set_daemon()
    task.register("sink")
    while True:
        await task.receive()


async def waiting_target(task: Task) -> str:
    """Registered as ``target``: ends (returning "done") at its first message."""
    task.register("target")
    await task.receive()
    return "done"


async def locate(name: str, location: Location | None = None) -> Task:
    """The task registered as ``name`` (at ``location`` if given), within 5 s."""
    found = await Task.locate(name, location, timeout=5)
    assert found is not None, f"{name} not found at {location}"
    return found


class PeerLog:
    """Every PeerStatus a node reports, with the trio time it arrived."""

    def __init__(self, node: Pycos) -> None:
        self.log: list[tuple[float, PeerStatus]] = []
        self._changed = trio.Event()
        node.peer_status(node.spawn(self._run))

    async def _run(self, task: Task) -> None:
        task.set_daemon()
        while True:
            status = await task.receive()
            self.log.append((trio.current_time(), status))
            self._changed.set()
            self._changed = trio.Event()

    def kinds(self) -> list[str]:
        return [status.status.name for _, status in self.log]

    def times(self, status: int) -> list[float]:
        return [t for t, s in self.log if s.status == status]

    async def wait_for(self, status: int, count: int = 1) -> float:
        """The time of the ``count``-th ``status`` report, waiting for it."""
        while len(self.times(status)) < count:
            await self._changed.wait()
        return self.times(status)[count - 1]


async def handshaken(
    stream: trio.abc.Stream, secret: str, address: str = "127.0.0.1"
) -> trio.abc.Stream:
    """Authenticate on ``stream`` like a peer named ``zombie`` (that says it is at
    ``address``), then leave the stream to the caller: a zombie if it never speaks
    or reads again."""
    machine = Handshake(
        initiator=True,
        key=derive_key(secret),
        node_id=secrets.token_bytes(16),
        name="zombie",
        locations=[(address, 1)],
    )
    await stream.send_all(machine.data_to_send())
    while machine.next_event() is None:
        await stream.send_all(machine.data_to_send())
        machine.receive_data(await stream.receive_some(4096))
    await stream.send_all(machine.data_to_send())
    return stream


async def zombie(location: Location, secret: str = "test-secret") -> trio.abc.Stream:
    """Over TCP: connect to ``location`` and authenticate like a peer (``handshaken``)."""
    return await handshaken(await trio.open_tcp_stream(location.addr, location.port), secret)
