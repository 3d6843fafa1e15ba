"""Remote procedure services: locate, call, monitor, close, errors.

Over real loopback TCP between nodes in one process (real clock, bounded)."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest
import trio
from conftest import Cluster
from trio.testing import MockClock

from triopycos import RPS, MonitorStatus, Task, open_pycos


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
        with a_node(a):
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
        with a_node(a):
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
        with a_node(a):
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
        with a_node(a):
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
        with a_node(a):
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
        with a_node(a):
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
            with a_node(server):
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


class a_node:
    """Make ``node`` the current node for constructing RPSs in a test body."""

    def __init__(self, node: Any) -> None:
        from triopycos._context import current_node_var

        self._var = current_node_var
        self._node = node

    def __enter__(self) -> None:
        self._token = self._var.set(self._node)

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._token)


async def test_results_are_pushed_and_never_lost(cluster: Cluster, clock: Any) -> None:
    with trio.fail_after(LIMIT * 6):
        async with cluster("server", "client", peered=False) as nodes:
            server, client_node = nodes
            with a_node(server):
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
                with a_node(server):
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
