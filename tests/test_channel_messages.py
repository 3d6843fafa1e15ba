"""Channels carry None, and subscriptions in a cycle cannot loop a message (issue 17,
items 2 and 3): on one node and across nodes of the virtual network, under the
autojump clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from triopycos import Channel, Pycos, Task, open_pycos
from triopycos.testing import VirtualNetwork


def local_node() -> Any:
    return open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False)


async def until_none(task: Task) -> list[Any]:
    """pycos's channel example's consumer: everything up to a None."""
    got = []
    while (msg := await task.receive()) is not None:
        got.append(msg)
    return got


class Inbox:
    """A daemon task that keeps every message it receives."""

    def __init__(self, node: Pycos) -> None:
        self.got: list[Any] = []
        self.task = node.spawn(self._run)

    async def _run(self, task: Task) -> None:
        task.set_daemon()
        while True:
            self.got.append(await task.receive())


# -- None is a message ------------------------------------------------------------------


async def test_none_ends_a_stream_as_in_pycos_channel_example(autojump_clock: MockClock) -> None:
    async with local_node():
        channel = Channel("sum_prod")
        consumers = [Task(until_none), Task(until_none)]
        for consumer in consumers:
            assert await channel.subscribe(consumer) == 0
        for number in (1.5, 2.0, 0.5):
            assert channel.send(number) == 0
        assert channel.send(None) == 0  # the example's end of data
        with trio.fail_after(5):
            assert [await c.finish() for c in consumers] == [[1.5, 2.0, 0.5]] * 2


async def test_deliver_of_none_counts_its_recipients(autojump_clock: MockClock) -> None:
    async with local_node() as node:
        top, below = Channel("top"), Channel("below")
        inboxes = [Inbox(node) for _ in range(3)]
        assert await top.subscribe(inboxes[0].task) == 0
        assert await top.subscribe(below) == 0
        for inbox in inboxes[1:]:
            assert await below.subscribe(inbox.task) == 0
        assert await top.deliver(None) == 3
        assert await top.deliver(None, n=2, timeout=1) == 3
        await trio.testing.wait_all_tasks_blocked()
        assert [inbox.got for inbox in inboxes] == [[None, None]] * 3


async def test_only_a_transform_drops_with_none(autojump_clock: MockClock) -> None:
    def odd_only(name: str, message: Any) -> Any:
        return message if isinstance(message, int) and message % 2 else None

    async with local_node() as node:
        plain, filtered = Channel("plain"), Channel("filtered", transform=odd_only)
        inbox = Inbox(node)
        assert await plain.subscribe(inbox.task) == 0
        assert await filtered.subscribe(inbox.task) == 0
        assert filtered.send(2) == 0  # dropped by the transform
        assert await filtered.deliver(4) == 0
        assert await filtered.deliver(None) == 0  # the transform returns None for it
        assert filtered.send(3) == 0
        assert await plain.deliver(None) == 1
        await trio.testing.wait_all_tasks_blocked()
        assert inbox.got == [3, None]


async def test_none_crosses_nodes(autojump_clock: MockClock) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await b.peer(a.location) == 0
        with current(a):
            news = Channel("news")
        assert news.register() == 0
        here = Inbox(a)
        there = Inbox(b)
        assert await news.subscribe(here.task) == 0

        async def remote_side() -> tuple[int, int]:
            rnews = await Channel.locate("news", a.location, timeout=5)
            assert rnews is not None
            assert await rnews.subscribe(there.task) == 0
            return rnews.send(None), await rnews.deliver(None, timeout=5)

        assert await b.spawn(remote_side).finish() == (0, 2)
        assert news.send(None) == 0
        await trio.testing.wait_all_tasks_blocked()
        assert here.got == there.got == [None, None, None]


# -- cycles of subscriptions ------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 3, 5])
async def test_a_cycle_of_local_channels_gives_each_subscriber_a_send_once(
    length: int, autojump_clock: MockClock
) -> None:
    async with local_node() as node:
        channels = [Channel(f"c{i}") for i in range(length)]
        inboxes = [Inbox(node) for _ in channels]
        for channel, inbox in zip(channels, inboxes, strict=True):
            assert await channel.subscribe(inbox.task) == 0
        for before, after in itertools.pairwise([*channels, channels[0]]):
            assert await before.subscribe(after) == 0  # after gets what before gets
        assert channels[0].send("s") == 0
        assert await channels[-1].deliver("d") == length
        await trio.testing.wait_all_tasks_blocked()
        assert [sorted(inbox.got) for inbox in inboxes] == [["d", "s"]] * length


async def test_a_cycle_with_a_shortcut_ends_and_each_path_carries_a_send_once(
    autojump_clock: MockClock,
) -> None:
    """a -> b -> c -> a, and a -> c as well: c is on two paths from a, so its
    subscriber gets a send from a twice (as in pycos), one from b or c once, and
    nothing loops."""
    async with local_node() as node:
        a, b, c = Channel("a"), Channel("b"), Channel("c")
        inbox = Inbox(node)
        assert await c.subscribe(inbox.task) == 0
        for source, target in ((a, b), (b, c), (c, a), (a, c)):
            assert await source.subscribe(target) == 0
        assert await a.deliver("from a") == 2
        assert await b.deliver("from b") == 1
        assert c.send("from c") == 0
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(inbox.got) == ["from a", "from a", "from b", "from c"]


@pytest.mark.parametrize("nodes", [2, 3])
async def test_a_cycle_of_channels_across_nodes_gives_each_subscriber_a_send_once(
    nodes: int, autojump_clock: MockClock
) -> None:
    """Channel i on node i subscribes to channel i-1 (and the first to the last),
    each with a task subscribed on its own node.  On a link with latency a loop would
    go on in virtual time: a virtual second later, each task has its messages once."""
    async with open_ring(nodes) as ring:
        channels, inboxes = ring
        assert channels[0].send("s") == 0
        assert await channels[-1].deliver("d", timeout=5) == nodes
        await trio.sleep(1)
        assert [sorted(inbox.got) for inbox in inboxes] == [["d", "s"]] * nodes


async def test_a_channel_cannot_subscribe_to_itself_remotely_and_is_told_at_once(
    autojump_clock: MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await b.peer(a.location) == 0
        with current(a):
            assert Channel("self").register() == 0

        async def subscribe_itself() -> int:
            rchan = await Channel.locate("self", a.location, timeout=5)
            assert rchan is not None
            return await rchan.subscribe(rchan, timeout=30)

        start = trio.current_time()
        assert await b.spawn(subscribe_itself).finish() == -1
        assert trio.current_time() - start < 1  # answered, not timed out


# -- helpers ----------------------------------------------------------------------------


class current:
    """Make ``node`` the current node for constructing channels in a test body."""

    def __init__(self, node: Pycos) -> None:
        from triopycos._context import current_node_var

        self._var = current_node_var
        self._node = node

    def __enter__(self) -> None:
        self._token = self._var.set(self._node)

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._token)


@asynccontextmanager
async def open_ring(count: int) -> AsyncIterator[tuple[list[Channel], list[Inbox]]]:
    """``count`` nodes, each with channel ``ring{i}`` and a task subscribed to it, and
    every channel subscribed to the one before it (the first to the last)."""
    async with AsyncExitStack() as stack:
        net = await stack.enter_async_context(VirtualNetwork(seed=3))
        nodes = [
            await stack.enter_async_context(net.open_pycos(name=f"n{i}")) for i in range(count)
        ]
        for i, node in enumerate(nodes[1:], 1):
            net.set_link(nodes[0], node, latency=0.01)
            assert await node.peer(nodes[0].location) == 0
            for other in nodes[1:i]:
                net.set_link(other, node, latency=0.01)
                assert await node.peer(other.location) == 0
        channels, inboxes = [], []
        for i, node in enumerate(nodes):
            with current(node):
                channel = Channel(f"ring{i}")
            assert channel.register() == 0
            inbox = Inbox(node)
            assert await channel.subscribe(inbox.task) == 0
            channels.append(channel)
            inboxes.append(inbox)
        for i, node in enumerate(nodes):
            before = i - 1 if i else count - 1

            async def subscribe(i: int = i, before: int = before) -> int:
                # The channel before, as a reference held on this node.
                there = await Channel.locate(f"ring{before}", nodes[before].location, timeout=5)
                assert there is not None
                return await there.subscribe(channels[i], timeout=5)

            assert await node.spawn(subscribe).finish() == 0
        yield channels, inboxes
