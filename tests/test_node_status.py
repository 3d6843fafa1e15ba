"""``Pycos.status()`` and ``Pycos.ping()``: a node's view of itself, asked over the
wire (the NODE_STATUS and ECHO requests), on both transports where the test does not
need a fault only one of them can make."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
import trio
import trio.testing
from conftest import Cluster
from nodes import connection

import triopycos
from triopycos import (
    RPS,
    Channel,
    Location,
    NodeStatistics,
    NodeStatus,
    PeerInfo,
    Task,
    open_pycos,
)
from triopycos._node_status import status_from_wire, status_to_wire
from triopycos.protocol.codec import Codec
from triopycos.protocol.messages import Kind, Request
from triopycos.testing import VirtualNetwork

LIMIT = 10


async def idle(task: Task) -> None:
    task.set_daemon()
    await task.receive()


async def answer(x: int) -> int:
    return x


async def services(task: Task) -> None:
    """Registers a task, a channel and an RPS on its node, then idles."""
    task.set_daemon()
    task.register("worker")
    assert Channel("news").register() == 0
    assert RPS(answer).register() == 0
    await task.receive()


async def test_status_of_a_peer_lists_names_peers_and_statistics(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b", "c") as (a, b, c):
            b.spawn(services)
            b.spawn(idle).register("another")
            await trio.testing.wait_all_tasks_blocked()  # services registered its names
            status = await a.status(b.location, timeout=5)
            assert isinstance(status, NodeStatus)
            assert status.name == "b"
            assert status.location == b.location
            assert status.tasks == ("another", "worker")  # sorted
            assert status.channels == ("news",)
            assert status.rps == ("answer",)
            assert status.version == triopycos.__version__
            # b was peered with a by the cluster; a's own request adds no connection.
            assert status.peers == (PeerInfo("a", a.location),)
            assert isinstance(status.statistics, NodeStatistics)
            assert status.statistics.tasks == 2 and status.statistics.peers == 1
            assert status.statistics.registered_tasks == 2
            assert status.statistics.registered_channels == 1
            # The first node of the cluster is connected to both others.
            of_a = await c.status(a.location, timeout=5)
            assert of_a is not None
            assert {p.name for p in of_a.peers} == {"b", "c"}


async def test_own_status_needs_no_network_and_matches_what_peers_hear(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b") as (a, b):
            b.spawn(idle).register("worker")
            here = await b.status()
            again = await b.status(b.location)
            heard = await a.status(b.location, timeout=5)
            assert here is not None and again is not None and heard is not None
            # The same node at (nearly) the same moment: everything but the counters
            # (the new task has become a daemon meanwhile).
            assert dataclasses.replace(again, statistics=here.statistics) == here
            assert dataclasses.replace(heard, statistics=here.statistics) == here
            assert heard.statistics == b.statistics()
            assert here.as_json()["tasks"] == ["worker"]
            assert here.as_json()["location"] == str(b.location)
            assert here.as_json()["peers"] == [{"name": "a", "location": str(a.location)}]


async def test_status_and_ping_connect_to_a_node_that_is_not_a_peer(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b", peered=False) as (a, b):
            assert a.peers() == []
            status = await a.status(b.location, timeout=5)
            assert status is not None and status.name == "b"
            assert a.peers() == [b.location]
            rtt = await a.ping(b.location, timeout=5)
            assert rtt is not None and rtt >= 0
            assert await b.ping(b.location) == 0.0  # itself: no network


async def test_status_and_ping_of_a_node_that_left_are_none(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", peered=False) as nodes:
            (a,) = nodes
            async with nodes.open("gone") as gone:
                where = gone.location
                assert await a.ping(where, timeout=5) is not None
            assert await a.status(where, timeout=5) is None
            assert await a.ping(where, timeout=5) is None


async def test_status_and_ping_fail_at_once_when_the_peer_goes_away_meanwhile(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", peered=False) as nodes, trio.open_nursery() as nursery:
            (a,) = nodes
            asked = trio.Event()

            def never_answer(conn: Any, message: Request) -> None:
                asked.set()

            async def run_b(*, task_status: trio.TaskStatus[triopycos.Pycos]) -> None:
                async with nodes.open("b") as b:
                    b._remote._on_node_status = never_answer  # type: ignore[method-assign]
                    b._remote._on_echo = never_answer  # type: ignore[method-assign]
                    task_status.started(b)
                    await trio.sleep_forever()

            async def ask(question: Any, where: Location, got: list[Any], done: trio.Event) -> None:
                got.append(await question(where))
                done.set()

            for question in (a.status, a.ping):
                asked = trio.Event()
                b = await nursery.start(run_b)
                got: list[Any] = []
                done = trio.Event()
                nursery.start_soon(ask, question, b.location, got, done)
                await asked.wait()
                start = trio.current_time()
                b.terminate()  # its connection closes: the waiting request fails now
                await done.wait()
                assert got == [None]
                assert trio.current_time() - start < 5  # not a timeout: there is none


async def test_status_and_ping_time_out(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        VirtualNetwork(seed=4) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await a.peer(b.location) == 0
        net.freeze(b)
        start = trio.current_time()
        assert await a.status(b.location, timeout=2) is None
        assert await a.ping(b.location, timeout=2) is None
        assert 4 <= trio.current_time() - start < 5
        net.thaw(b)
        assert await a.ping(b.location, timeout=2) is not None


async def test_status_with_a_wrong_secret_is_none(caplog: pytest.LogCaptureFixture) -> None:
    net: dict[str, Any] = {"node": "127.0.0.1", "tcp_port": 0, "discover_peers": False}
    with trio.fail_after(LIMIT):
        async with (
            open_pycos(name="a", secret="right", **net) as a,
            open_pycos(name="b", secret="wrong", **net) as b,
        ):
            assert await b.status(a.location, timeout=5) is None
            assert await b.ping(a.location, timeout=5) is None
            assert b.statistics().handshakes_failed == 2
    assert "wrong secret" in caplog.text


async def test_ping_measures_the_link(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        VirtualNetwork(seed=5) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b") as b,
    ):
        assert await a.peer(b.location) == 0
        net.set_link(a, b, latency=0.05)
        rtt = await a.ping(b.location)
        assert rtt is not None and 0.1 <= rtt < 0.2  # there and back


async def test_bad_arguments(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", peered=False) as (a,):
        with pytest.raises(TypeError):
            await a.status("127.0.0.1:1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.ping(None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await a.status(a.location, timeout=-1)
        with pytest.raises(ValueError):
            await a.ping(a.location, timeout=-1)


# -- the wire form ---------------------------------------------------------------------


def sample() -> NodeStatus:
    stats = NodeStatistics(**{f.name: i for i, f in enumerate(dataclasses.fields(NodeStatistics))})
    return NodeStatus(
        name="n",
        locations=(Location("127.0.0.1", 9705), Location("::1", 9705)),
        tasks=("t",),
        channels=(),
        rps=("r1", "r2"),
        peers=(PeerInfo("p", Location("127.0.0.1", 1)),),
        statistics=stats,
        version="1",
    )


def test_status_round_trips_through_the_codec() -> None:
    codec = Codec()
    wire = codec.decode(codec.encode(status_to_wire(sample())))
    assert status_from_wire(wire) == sample()


def test_unknown_fields_are_ignored() -> None:
    wire = status_to_wire(sample())
    wire["later"] = [1, 2]
    wire["statistics"] = wire["statistics"] | {"new_counter": 5}
    assert status_from_wire(wire) == sample()


def broken(change: Any) -> dict[str, Any]:
    wire = status_to_wire(sample())
    change(wire)
    return wire


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        "status",
        broken(lambda w: w.pop("name")),
        broken(lambda w: w.update(name=7)),
        broken(lambda w: w.update(locations=[])),
        broken(lambda w: w.update(locations=["127.0.0.1:1"])),
        broken(lambda w: w.update(tasks=("t",))),
        broken(lambda w: w.update(tasks=[1])),
        broken(lambda w: w.update(peers=[["p"]])),
        broken(lambda w: w.update(peers=[["p", "127.0.0.1:1"]])),
        broken(lambda w: w.update(statistics=[])),
        broken(lambda w: w["statistics"].pop("tasks")),
        broken(lambda w: w["statistics"].update(tasks=-1)),
        broken(lambda w: w["statistics"].update(tasks=True)),
        broken(lambda w: w.update(version=None)),
    ],
)
def test_malformed_answers_are_refused(value: Any) -> None:
    assert status_from_wire(value) is None


async def test_a_malformed_answer_from_a_peer_is_none_and_logged(
    cluster: Cluster, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster("a", "b") as (a, b):

        def bad(conn: Any, message: Request) -> None:
            conn.reply(message, {"name": "b"})

        b._remote._on_node_status = bad  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, "triopycos.remote"):
            assert await a.status(b.location, timeout=5) is None
        assert "malformed status" in caplog.text
        del b._remote._on_node_status
        # A malformed request is answered with the failure value; the session goes on.
        conn = connection(a)
        assert await conn.request_raw(Kind.NODE_STATUS, "extra", timeout=5) is None
        assert await conn.request_raw(Kind.ECHO, "extra", timeout=5) is False
        assert await a.ping(b.location, timeout=5) is not None
