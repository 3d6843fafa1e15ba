"""Channels carry None, and subscriptions in a cycle cannot loop a message (issue 17,
items 2 and 3): each channel handles a send at most once, whatever graph the
subscriptions form (a cycle, a diamond, a full mesh), so each subscriber gets it at
most once per send.  On one node and across nodes of the virtual network, under the
autojump clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from nodes import connection, current
from trio.testing import MockClock

from triopycos import Channel, Pycos, Task, _send_ids, open_pycos
from triopycos._send_ids import MAX_HOPS
from triopycos.protocol.messages import ChannelDeliver, Kind
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


async def test_a_cycle_with_a_shortcut_gives_each_subscriber_a_send_once(
    autojump_clock: MockClock,
) -> None:
    """a -> b -> c -> a, and a -> c as well: c is on two paths from a, yet its
    subscriber gets each send once (c handles a send once, by whichever path comes
    first), and nothing loops."""
    async with local_node() as node:
        a, b, c = Channel("a"), Channel("b"), Channel("c")
        inbox = Inbox(node)
        assert await c.subscribe(inbox.task) == 0
        for source, target in ((a, b), (b, c), (c, a), (a, c)):
            assert await source.subscribe(target) == 0
        assert await a.deliver("from a") == 1
        assert a.send("sent by a") == 0
        assert await b.deliver("from b") == 1
        assert c.send("from c") == 0
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(inbox.got) == ["from a", "from b", "from c", "sent by a"]


@pytest.mark.parametrize("size", [4, 6])
async def test_a_mesh_of_local_channels_gives_one_copy_per_send(
    size: int, autojump_clock: MockClock
) -> None:
    """Review finding: every channel subscribed to every other, a task to one of
    them.  One copy per *path* was e*(n-2)! copies of one send (109,601 and 2 s of
    CPU for 10 channels); one per send, and forwarding work quadratic in n (each
    channel offers the send to each other once)."""
    async with local_node() as node:
        channels = [Channel(f"c{i}") for i in range(size)]
        for a in channels:
            for b in channels:
                if a is not b:
                    assert await a.subscribe(b) == 0
        inbox = Inbox(node)
        assert await channels[1].subscribe(inbox.task) == 0
        forwards = 0
        original = Channel._forward

        def counting(self: Channel, *args: Any) -> int:
            nonlocal forwards
            forwards += 1
            return original(self, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Channel, "_forward", counting)
            assert channels[0].send("once") == 0
            assert await channels[2].deliver("delivered") == 1
        await trio.testing.wait_all_tasks_blocked()
        assert inbox.got == ["once", "delivered"]
        assert forwards <= size * size  # each channel offers it to each other once


async def test_a_peer_that_wires_the_nodes_channels_into_a_mesh_gets_one_copy_per_send(
    autojump_clock: MockClock,
) -> None:
    """Review finding: any authenticated peer can subscribe the node's registered
    channels to each other (ordinary API calls), so one peer send cost the node
    factorial CPU (8 channels: 1,957 copies to one task).  Now one copy."""
    names = [f"feed{i}" for i in range(8)]
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="victim") as victim,
        net.open_pycos(name="peer") as peer,
    ):
        for name in names:
            with current(victim):
                assert Channel(name).register() == 0
        inbox = Inbox(victim)

        async def wire(task: Task) -> int:
            found: list[Channel] = []
            for name in names:
                channel = await Channel.locate(name, victim.location, timeout=5)
                assert channel is not None
                found.append(channel)
            for a in found:
                for b in found:
                    if a is not b:
                        assert await a.subscribe(b) == 0
            assert await found[1].subscribe(inbox.task) == 0
            assert found[0].send("one message") == 0
            return await found[3].deliver("one delivery", timeout=5)

        assert await peer.spawn(wire).finish() == 1
        await trio.testing.wait_all_tasks_blocked()
        assert inbox.got == ["one message", "one delivery"]


async def test_a_send_id_already_seen_is_dropped_and_the_hop_bound_is_the_last_stop(
    autojump_clock: MockClock,
) -> None:
    """On the wire a forwarded message carries ``[send id, hops]``: a channel drops
    a send it has handled, and a message that has passed ``MAX_HOPS`` channels
    whatever its id (so a loop ends even if its id left a channel's window)."""
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        with current(a):
            feed = Channel("feed")
            assert feed.register() == 0
        inbox = Inbox(a)
        assert await feed.subscribe(inbox.task) == 0
        assert await b.peer(a.location) == 0
        conn = connection(b)
        for mark in ([b"send 1", 1], [b"send 1", 2], [b"send 2", 1], [b"send 3", MAX_HOPS]):
            assert conn.send_raw([Kind.CHANNEL_SEND, "feed", mark[0], mark]) == 0
        assert await conn.request(ChannelDeliver("feed", "d", 5, 0, b"send 2", 3)) == 0
        assert await conn.request(ChannelDeliver("feed", "d", 5, 0, b"send 4", 3)) == 1
        await trio.testing.wait_all_tasks_blocked()
        assert inbox.got == [b"send 1", b"send 2", "d"]


async def test_a_cycle_ends_at_the_hop_bound_even_when_its_send_id_is_forgotten(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The absolute stop: with no window at all (every id forgotten at once), a
    cycle of two channels still ends, after ``MAX_HOPS`` channels."""
    monkeypatch.setattr(_send_ids, "SEEN_KEPT", 0)
    async with local_node() as node:
        a, b = Channel("a"), Channel("b")
        inbox = Inbox(node)
        assert await a.subscribe(inbox.task) == 0
        assert await a.subscribe(b) == 0
        assert await b.subscribe(a) == 0
        assert a.send("looping") == 0
        await trio.testing.wait_all_tasks_blocked()
        assert len(inbox.got) == MAX_HOPS // 2


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
