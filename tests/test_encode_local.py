"""``encode_local``: a test of one node can catch messages that cannot cross the wire.

By default a local message is handed over by reference (fast, and nothing checks
that it could travel); with ``open_pycos(encode_local=True)``, or a
``VirtualNetwork(encode_local=True)``, it goes through the codec as a peer's would.
"""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triopycos import RPS, Channel, Pycos, Task, open_pycos
from triopycos.testing import VirtualNetwork
from triopycos.testing.pytest_plugin import (  # noqa: F401 (fixtures)
    virtual_network,
    virtual_network_encode_local,
    virtual_network_seed,
)


@asynccontextmanager
async def one_node(how: str, encode_local: bool) -> AsyncIterator[Pycos]:
    if how == "tcp":
        async with open_pycos(
            node="127.0.0.1", tcp_port=0, discover_peers=False, encode_local=encode_local
        ) as pycos:
            yield pycos
    else:
        async with VirtualNetwork(encode_local=encode_local) as net, net.open_pycos() as pycos:
            yield pycos


async def inbox(task: Task, got: list[Any]) -> None:
    while True:
        got.append(await task.receive())


@pytest.mark.parametrize("how", ["tcp", "virtual"])
async def test_by_default_local_messages_go_by_reference(how: str) -> None:
    got: list[Any] = []
    message = {"a": [1, 2]}
    async with one_node(how, encode_local=False) as pycos:
        receiver = Task(inbox, got)
        receiver.set_daemon()
        lock = threading.Lock()
        assert receiver.send(message) == 0
        assert receiver.send(lock) == 0  # "works", and would fail between nodes
        await trio.testing.wait_all_tasks_blocked()
        assert got[0] is message and got[1] is lock
        assert pycos.statistics().tasks == 1


@pytest.mark.parametrize("how", ["tcp", "virtual"])
async def test_encode_local_refuses_what_cannot_travel(how: str) -> None:
    got: list[Any] = []
    async with one_node(how, encode_local=True):
        receiver = Task(inbox, got)
        receiver.set_daemon()
        with pytest.raises(TypeError, match="functions cannot be sent"):
            receiver.send(lambda: None)
        with pytest.raises(TypeError, match=r"locks .* cannot be sent"):
            await receiver.deliver({"lock": threading.Lock()}, timeout=1)
        message = {"me": receiver, "t": (1, 2), "s": {3}}
        assert receiver.send(message) == 0
        await trio.testing.wait_all_tasks_blocked()
        # A copy, as a peer gets; a reference to a local task is that task again.
        assert got == [message] and got[0] is not message
        assert got[0]["me"] is receiver


async def test_encode_local_covers_channels_and_rps_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[Any] = []

    async def echo(x: Any) -> Any:
        return x

    async with VirtualNetwork(encode_local=True) as net, net.open_pycos():
        receiver = Task(inbox, got)
        receiver.set_daemon()
        channel = Channel("c")
        assert await channel.subscribe(receiver) == 0
        with pytest.raises(TypeError, match="open files cannot be sent"):
            channel.send(io.StringIO("a file"))
        with pytest.raises(TypeError, match="functions cannot be sent"):
            await channel.deliver(print)
        assert await channel.deliver([1]) == 1
        service = RPS(echo)
        with pytest.raises(TypeError, match="functions cannot be sent"):
            await service(lambda: None)
        call = await service(x=[2])
        assert call is not None and await call.finish() == [2]
        await trio.testing.wait_all_tasks_blocked()
        assert got == [[1]]


@pytest.mark.parametrize("virtual_network_encode_local", [True])
async def test_the_fixture_turns_it_on(
    virtual_network: VirtualNetwork,  # noqa: F811
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert virtual_network.encode_local
    async with virtual_network.open_pycos():
        receiver = Task(inbox, [])
        receiver.set_daemon()
        with pytest.raises(TypeError, match="cannot be sent"):
            receiver.send(threading.Lock())
    # An explicit argument wins over the network's default.
    async with virtual_network.open_pycos(encode_local=False):
        receiver = Task(inbox, [])
        receiver.set_daemon()
        assert receiver.send(threading.Lock()) == 0
