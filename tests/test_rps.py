"""Remote procedure services: locate, call, monitor, close, errors.

Over real loopback TCP between nodes in one process (real clock, bounded)."""

from __future__ import annotations

import logging
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
from conftest import Cluster
from nodes import connection, current
from trio.testing import MockClock

from triopycos import RPS, Limits, MonitorStatus, Task, open_pycos
from triopycos._pushed import PushedResults
from triopycos.protocol.codec import Codec
from triopycos.protocol.messages import TaskFinish, TaskResult
from triopycos.services.peer import PeerConnection
from triopycos.testing import VirtualNetwork


async def double(x: int) -> int:
    return 2 * x


def gen_add(a: int, b: int, task: Task | None = None) -> Generator[Any, Any, int]:
    yield trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the driver awaits it)
    return a + b


async def fails(reason: str) -> None:
    raise ValueError(reason)


async def waits(task: Task) -> Any:
    return await task.receive()


LIMIT = 10


def serve(rps_methods: list[Any]) -> list[RPS]:
    services = [RPS(method) for method in rps_methods]
    for service in services:
        assert service.register() == 0
    return services


async def test_call_and_finish_across_nodes(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        with current(a):
            serve([double, gen_add])

        async def client() -> tuple[Any, ...]:
            d = await RPS.locate("double", timeout=5)
            g = await RPS.locate("gen_add", a.location, timeout=5)
            again = await RPS.locate("double", timeout=5)
            assert d is not None and g is not None and again == d
            t1 = await d(21)
            t2 = await g(1, b=2)
            assert isinstance(t1, Task) and isinstance(t2, Task)
            assert t1.location == a.location
            return await t1.finish(timeout=5), await t2.finish(timeout=5)

        assert await b.spawn(client).finish() == (42, 3)


async def test_instant_tasks_never_lose_results(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        with current(a):
            serve([double])

        async def client() -> list[Any]:
            d = await RPS.locate("double", timeout=5)
            assert d is not None
            results = []
            for i in range(1000):
                rtask = await d(i)
                assert rtask is not None
                results.append(await rtask.finish(timeout=5))
            return results

        with trio.fail_after(LIMIT * 3):
            assert await b.spawn(client).finish() == [2 * i for i in range(1000)]


async def test_monitor_sees_every_task_created_afterwards(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        with current(a):
            serve([double, fails])

        async def client(task: Task) -> list[Any]:
            d = await RPS.locate("double", timeout=5)
            f = await RPS.locate("fails", timeout=5)
            assert d is not None and f is not None
            before = await d(1)  # created before monitor(): not reported
            assert before is not None and await before.finish(timeout=5) == 2
            assert d.monitor(task) == 0 and f.monitor(task) == 0
            assert d.monitor("nope") == -1  # type: ignore[arg-type]
            created = [await d(2), await d(3), await f("bad input")]
            statuses = [await task.receive(timeout=5) for _ in created]
            assert await task.receive(timeout=0.2) is None
            return statuses

        statuses = await b.spawn(client).finish()
        returned = sorted(s.value for s in statuses if s.type is StopIteration)
        (failed,) = [s for s in statuses if s.type is not StopIteration]
        assert returned == [4, 6]
        assert failed.type is ValueError and "bad input" in failed.value


async def test_close_terminates_created_tasks(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        with current(a):
            serve([waits])

        async def client(task: Task) -> tuple[Any, Any]:
            w = await RPS.locate("waits", timeout=5)
            assert w is not None
            w.monitor(task)
            rtask = await w()
            assert rtask is not None
            assert w.close() == 0
            status = await task.receive(timeout=5)
            return status, await w()

        status, after_close = await b.spawn(client).finish()
        assert isinstance(status, MonitorStatus) and status.type is GeneratorExit
        assert after_close is None


async def test_bad_calls_fail_with_none_and_are_logged_on_both_sides(
    cluster: Cluster,
    clock: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with cluster("a", "b") as (a, b):
        with current(a):
            (service,) = serve([double])
        survivor = a.spawn(waits)

        async def client() -> list[Any]:
            d = await RPS.locate("double", timeout=5)
            assert d is not None
            wrong_args = await d(1, 2, 3)
            assert service.unregister() == 0
            gone = await d(1)
            return [wrong_args, gone]

        assert await b.spawn(client).finish() == [None, None]
        assert survivor.is_alive()  # the serving node keeps running its tasks
        survivor.send("done")
    messages = [r.getMessage() for r in caplog.records]
    assert any("call of RPS('double')" in m and "from" in m for m in messages)  # serving side
    assert any("call of RPS('double')" in m and "failed: " in m for m in messages)  # caller
    assert any("no RPS registered as 'double'" in m for m in messages)


async def test_locate_unknown_rps_and_bad_methods(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):

        async def client() -> Any:
            return await RPS.locate("nothing", timeout=0.2)

        assert await b.spawn(client).finish() is None
        with current(a):
            with pytest.raises(TypeError):
                RPS(len)
            with pytest.raises(TypeError):
                RPS(double, name="")
            taken = RPS(double)
            assert taken.register() == 0
            assert RPS(double).register() == -1
            assert taken.close() == -1  # the local service itself is not "closed"


async def test_local_rps_call(autojump_clock: MockClock) -> None:
    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        service = RPS(gen_add, name="add")
        assert service.register() == 0
        found = await RPS.locate("add")
        assert found is service
        task = await found(2, 3)
        assert task is not None and await task.finish() == 5


async def test_rps_over_three_nodes_with_a_remote_monitor(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("server", "client", "watcher", peered=False) as nodes:
            server, client_node, watcher_node = nodes
            with current(server):
                serve([double])
            assert await client_node.peer(server.location) == 0
            assert await watcher_node.peer(client_node.location) == 0

            async def watcher(task: Task) -> Any:
                task.register("watcher")
                return await task.receive(timeout=5)

            watching = watcher_node.spawn(watcher)

            async def client() -> Any:
                d = await RPS.locate("double", server.location, timeout=5)
                w = await Task.locate("watcher", watcher_node.location, timeout=5)
                assert d is not None and w is not None
                d.monitor(w)  # a monitor on a third node
                rtask = await d(5)
                assert rtask is not None
                return await rtask.finish(timeout=5)

            assert await client_node.spawn(client).finish() == 10
            status = await watching.finish()
            assert status.type is StopIteration and status.value == 10


async def test_results_are_pushed_and_never_lost(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT * 6):
        async with cluster("server", "client", peered=False) as nodes:
            server, client_node = nodes
            with current(server):
                serve([double])
            assert await client_node.peer(server.location) == 0

            async def client() -> list[Any]:
                d = await RPS.locate("double", timeout=5)
                assert d is not None
                # More tasks end before anyone asks than the serving node remembers.
                tasks = [await d(i) for i in range(5000)]
                results = [await t.finish(timeout=5) for t in tasks if t is not None]
                assert len(d._created) < 5000  # ended tasks are forgotten as calls go
                return results

            assert await client_node.spawn(client).finish() == [2 * i for i in range(5000)]


async def test_pushed_results_outlive_the_serving_node(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("client", peered=False) as nodes:
            (client_node,) = nodes
            async with nodes.open("server") as server:
                with current(server):
                    serve([double])
                assert await client_node.peer(server.location) == 0

                async def call() -> list[Task]:
                    d = await RPS.locate("double", timeout=5)
                    assert d is not None
                    tasks = [t for t in [await d(i) for i in range(3)] if t is not None]
                    await tasks[-1].finish(timeout=5)  # all have ended by now
                    return tasks

                tasks = await client_node.spawn(call).finish()
            # The server has left: no request can reach it, yet the results are here.
            assert [await t.finish(timeout=1) for t in tasks] == [0, 2, 4]


# -- pushed results: only ours, bounded, never a stranded finish() -----------------------


class Gate:
    """An RPS method whose tasks end (with their argument) once ``open`` is called."""

    def __init__(self) -> None:
        self._open = trio.Event()

    def open(self) -> None:
        self._open.set()

    async def gated(self, x: Any) -> Any:
        await self._open.wait()
        return x


async def test_finish_of_an_rps_task_survives_a_flood_of_pushed_results(
    autojump_clock: MockClock,
) -> None:
    """Review finding: any peer's TASK_RESULT frames were kept (65,536 of them, of
    any size, kept after the peer left), and one that pushed out an entry a
    finish() waited on stranded that finish() for ever.  Only results of our own
    calls are kept now: the flood is dropped and counted."""
    gate = Gate()
    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="server") as server,
        net.open_pycos(name="flooder") as flooder,
        net.open_pycos(name="client") as client,
    ):
        with current(server):
            assert RPS(gate.gated, "gated").register() == 0
        assert await client.peer(server.location) == 0
        assert await client.peer(flooder.location) == 0

        async def caller() -> Any:
            rps = await RPS.locate("gated", server.location, timeout=5)
            assert rps is not None
            created = await rps("done")
            assert isinstance(created, Task)
            return await created.finish()  # no timeout: pycos's usual call

        waiting = client.spawn(caller)
        await trio.testing.wait_all_tasks_blocked()
        flood = 65_537  # one more than the old table's size (max_results_per_peer)
        conn = connection(flooder, client)
        for task_id in range(1, flood + 1):
            conn.send(TaskResult(task_id, None))
            if task_id % 4096 == 0:
                await trio.lowlevel.checkpoint()
        # The serving node itself pushing a result for a task we did not start:
        connection(server, client).send(TaskResult(10**6, "unasked"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(client._remote._results) == 1  # our call's entry only
        assert client.statistics().results_dropped == flood + 1
        gate.open()  # the task ends; its result is pushed to the client
        with trio.fail_after(30):
            assert await waiting.finish() == "done"


async def test_the_results_kept_per_serving_node_are_bounded_and_none_is_stranded(
    cluster: Cluster, clock: Any
) -> None:
    """``Limits.max_results_per_peer``: an entry a finish() may wait on is never
    dropped (calls beyond the bound get no entry: their finish() asks the serving
    node); to make room the oldest results go, those finish() has read first; a
    result dropped unread is counted."""
    gate = Gate()
    limits = Limits(max_results_per_peer=2)
    with trio.fail_after(LIMIT):
        async with cluster("server", "client", peered=False, limits=limits) as nodes:
            server, client = nodes
            with current(server):
                serve([double])
                assert RPS(gate.gated, "gated").register() == 0
            assert await client.peer(server.location) == 0

            async def calls(task: Task) -> list[Any]:
                gated = await RPS.locate("gated", server.location, timeout=5)
                d = await RPS.locate("double", server.location, timeout=5)
                assert gated is not None and d is not None
                slow = [await gated(i) for i in range(4)]
                assert all(isinstance(t, Task) for t in slow)
                table = client._remote._results
                assert len(table) == 2  # the other two have no entry
                results: list[Any] = []
                async with trio.open_nursery() as nursery:

                    async def finish(task: Any) -> None:
                        results.append(await task.finish(timeout=5))

                    for waiting in slow:
                        nursery.start_soon(finish, waiting)
                    await trio.testing.wait_all_tasks_blocked()
                    gate.open()
                # Two results came without an entry: not kept (their finish() asked).
                assert client.statistics().results_dropped == 2
                # Results of quick calls push the read ones out first, then the
                # oldest unread one.
                assert d.monitor(task) == 0
                quick = [t for t in [await d(i) for i in range(2)] if t is not None]
                for _ in quick:  # (each status follows its task's pushed result)
                    await task.receive(timeout=5)
                assert await quick[0].finish(timeout=5) == 0  # read
                await d(2)
                assert client.statistics().results_dropped == 2  # a read one went
                await d(3)
                assert client.statistics().results_dropped == 3  # quick[1], unread
                assert len(table) == 2
                # A result pushed out is still had from the serving node.
                assert await quick[1].finish(timeout=5) == 2
                return sorted(results)

            assert await client.spawn(calls).finish() == [0, 1, 2, 3]


async def test_the_bytes_of_results_kept_per_serving_node_are_bounded(
    cluster: Cluster, clock: Any
) -> None:
    """``Limits.max_result_bytes_per_peer`` bounds the encoded bytes of the
    results kept: big results push the oldest out; one bigger than the bound alone
    still reaches the finish() waiting for it, and is not kept."""
    limits = Limits(max_result_bytes_per_peer=10_000)

    async def blob(size: int) -> bytes:
        return b"x" * size

    with trio.fail_after(LIMIT):
        async with cluster("server", "client", peered=False, limits=limits) as nodes:
            server, client = nodes
            with current(server):
                serve([blob])
            assert await client.peer(server.location) == 0

            async def calls() -> list[int]:
                rps = await RPS.locate("blob", server.location, timeout=5)
                assert rps is not None
                tasks = [t for t in [await rps(4000) for _ in range(3)] if t is not None]
                sizes = [len(await t.finish(timeout=5)) for t in reversed(tasks)]
                table = client._remote._results
                assert len(table) == 2  # the first was pushed out (unread)
                assert client.statistics().results_dropped == 1
                huge = await rps(20_000)
                assert huge is not None
                sizes.append(len(await huge.finish(timeout=5)))
                assert len(table) == 2  # not kept, and nothing pushed out for it
                return sizes

            assert await client.spawn(calls).finish() == [4000] * 3 + [20_000]


class _StubNode:
    """What ``PushedResults`` reads of its node: the limits and the codec."""

    def __init__(self, limits: Limits) -> None:
        self._peers = SimpleNamespace(limits=limits)
        self._codec = Codec()


class _StubConn:
    def __init__(self, node_id: bytes) -> None:
        self.node_id = node_id

    def log_once(self, key: str, text: str, *args: object) -> None:
        pass


def test_lost_serving_nodes_share_one_budget_and_late_results_are_dropped() -> None:
    """A lost node's waiting entries get None at once; the results that had come
    stay readable, but all lost nodes' tables share one node's bounds (oldest lost
    first), so serving nodes that come and go do not add up; a result that arrives
    after the loss (a healed partition) is dropped, as the monitors' real statuses
    are; a node back online has its table to itself again."""
    results = PushedResults(cast(Any, _StubNode(Limits(max_results_per_peer=3))))
    first, second = _StubConn(b"1" * 16), _StubConn(b"2" * 16)
    for conn in (first, second):
        for task_id in (1, 2, 3):
            results.expect(conn.node_id, task_id)
        for task_id in (1, 2):
            results.arrived(cast(Any, conn), task_id, f"result {task_id}")
    waiting = results.get(first.node_id, 3)
    assert waiting is not None and not waiting.done
    results.lost(first.node_id)
    assert waiting.done and waiting.value is None  # a finish() waiting wakes with None
    assert len(results) == 6  # the lost node's three fit the lost nodes' budget
    results.lost(second.node_id)
    # Six entries of lost nodes, three may stay: the first node's go first.
    assert len(results) == 3
    assert results.get(first.node_id, 1) is None
    got = results.get(second.node_id, 1)
    assert got is not None and got.value == "result 1"
    assert results.dropped == 2  # two results gone unread (None for a loss is not one)
    results.arrived(cast(Any, second), 3, "late")
    late = results.get(second.node_id, 3)
    assert late is not None and late.value is None and results.dropped == 3
    results.online(second.node_id)  # back: its own bounds again
    results.expect(second.node_id, 4)
    assert len(results) == 3  # its oldest result pushed out to make room
    assert results.dropped == 4


async def test_the_result_of_a_task_that_ends_at_once_is_kept_without_a_request(
    cluster: Cluster, clock: Any
) -> None:
    """The entry for a call's result is made as the reply is read, before anything
    the serving node sent after it is dispatched: the result of a task that ends at
    once (pushed right behind the reply, read before the caller even runs again)
    finds it, so it is kept and finish() asks nothing."""
    async with cluster("server", "client") as (server, client):
        with current(server):
            serve([double])
        asked: list[Any] = []
        serve_finish = server._remote._on_task_finish

        def counting(conn: PeerConnection, message: TaskFinish) -> None:
            asked.append(message)
            serve_finish(conn, message)

        server._remote._on_task_finish = counting  # type: ignore[method-assign]

        async def calls() -> list[Any]:
            d = await RPS.locate("double", server.location, timeout=5)
            assert d is not None
            tasks = [await d(i) for i in range(100)]
            return [await t.finish(timeout=5) for t in tasks if t is not None]

        assert await client.spawn(calls).finish() == [2 * i for i in range(100)]
        assert asked == [] and client.statistics().results_dropped == 0
