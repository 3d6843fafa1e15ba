"""pycos's AsyncThreadPool and AsyncDBCursor (trio.to_thread with a limiter), and hot
swapping of generator task bodies (triopycos.compat), used from generator tasks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import triopycos.compat  # noqa: F401  (plugs hot swapping into the generator driver)
from triopycos import Pycos, Task, open_pycos
from triopycos.compat import AsyncDBCursor, AsyncThreadPool, HotSwapException

LIMIT = 10
Body = Generator[Any, Any, Any]


@asynccontextmanager
async def node() -> AsyncIterator[Pycos]:
    with trio.fail_after(LIMIT):
        async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
            yield pycos


# -- AsyncThreadPool --------------------------------------------------------------------


async def test_thread_pool_results_errors_and_its_bound() -> None:
    pool = AsyncThreadPool(2)
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    release = threading.Event()
    both_busy = trio.Event()

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            if running[0] == 2:  # (a pool thread is a trio worker thread)
                trio.from_thread.run_sync(both_busy.set)
        release.wait(LIMIT)
        with lock:
            running[0] -= 1
        if n == 3:
            raise ValueError("three")
        return n * n

    def body(n: int, task: Task) -> Body:
        try:
            return (yield pool.async_task(work, n))
        except ValueError as exc:
            return str(exc)

    async with node():
        tasks = [Task(body, n) for n in range(5)]
        with trio.fail_after(LIMIT):
            await both_busy.wait()  # the pool's two threads are both busy
        release.set()
        results = [await task.finish() for task in tasks]
    assert results == [0, 1, 4, "three", 16]
    assert running[1] == 2  # never more threads at once than the pool has
    await trio.to_thread.run_sync(pool.join)
    pool.terminate()
    with pytest.raises(RuntimeError, match="terminated"):
        pool.async_task(print)


async def test_thread_pool_thread_form_and_a_terminated_waiter() -> None:
    pool = AsyncThreadPool(1)
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def blocking() -> None:  # a call that blocks its thread (say, input())
        started.set()
        release.wait(LIMIT)
        finished.append("call finished")

    def body(task: Task) -> Body:
        # threading.Thread's form of the arguments, as pycos accepts.
        joined = yield pool.async_task(target=" ".join, args=(["a", "b"],))
        yield pool.async_task(blocking)
        return joined

    async with node():
        task = Task(body)
        await trio.to_thread.run_sync(started.wait, LIMIT)
        task.terminate()  # the task stops waiting at once; the call goes on
        assert await task.finish() is None
        assert finished == []
        release.set()
        await trio.to_thread.run_sync(pool.join)  # waits for the call still running
        assert finished == ["call finished"]


async def test_db_cursor_runs_one_call_at_a_time_in_the_pool() -> None:
    pool = AsyncThreadPool(3)
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    cursor = AsyncDBCursor(pool, connection.cursor())

    def body(task: Task) -> Body:
        yield cursor.execute("create table t (n integer)")
        yield cursor.executemany("insert into t values (?)", [(n,) for n in range(10)])
        yield cursor.execute("select sum(n) from t where n > ?", (4,))
        return cursor.fetchone()  # the cursor's own methods pass through

    async with node():
        assert await Task(body).finish() == (35,)
    connection.close()


# -- hot swapping ---------------------------------------------------------------------


def counting(log: list[Any], task: Task) -> Body:
    task.hot_swappable(True)
    while True:
        message = yield task.receive()
        log.append(("old", message))


def doubling(log: list[Any], task: Task) -> Body:
    while True:
        message = yield task.receive()
        log.append(("new", task.name, message * 2))
        if message == 3:
            return "new body done"


async def test_a_waiting_task_swaps_at_once_and_keeps_its_messages() -> None:
    log: list[Any] = []
    async with node():
        task = Task(counting, log)
        task.send(1)
        await trio.testing.wait_all_tasks_blocked()
        assert task.hot_swap(doubling, log) == 0
        for n in (2, 3):
            task.send(n)  # (queued while the swap happens: the new body gets them)
        assert await task.finish() == "new body done"
    assert log == [("old", 1), ("new", "doubling", 4), ("new", "doubling", 6)]


async def test_a_body_that_catches_the_swap_refuses_it() -> None:
    log: list[Any] = []

    def stubborn(task: Task) -> Body:
        task.hot_swappable(True)
        while True:
            try:
                message = yield task.receive()
            except HotSwapException as exc:
                log.append(("refused", exc.args[0].__name__))
                continue
            if message == "stop":
                return "old body done"

    async with node():
        task = Task(stubborn)
        await trio.testing.wait_all_tasks_blocked()
        assert task.hot_swap(doubling, log) == 0
        task.send("stop")
        assert await task.finish() == "old body done"
    assert log == [("refused", "doubling")]


async def test_a_swap_waits_until_the_task_allows_it() -> None:
    log: list[Any] = []

    def careful(task: Task) -> Body:
        log.append((yield task.receive()))  # not hot swappable yet
        task.hot_swappable(True)
        log.append("allowed")
        yield task.receive()  # the swap comes at this yield, instead of the receive

    async with node():
        task = Task(careful)
        await trio.testing.wait_all_tasks_blocked()
        assert task.hot_swap(doubling, log) == 0  # postponed
        task.send("first")
        task.send(3)
        assert await task.finish() == "new body done"
    assert log == ["first", "allowed", ("new", "doubling", 6)]


async def test_a_swap_waits_for_the_task_to_leave_its_sub_generators() -> None:
    log: list[Any] = []

    def helper(task: Task) -> Body:
        log.append((yield task.receive()))

    def nested(task: Task) -> Body:
        task.hot_swappable(True)
        yield helper(task)
        log.append("back in the old body")
        yield task.receive()  # its next yield: the swap comes here

    async with node():
        task = Task(nested)
        await trio.testing.wait_all_tasks_blocked()  # (waiting inside the helper)
        assert task.hot_swap(doubling, log) == 0
        task.send("in the helper")
        task.send(3)
        assert await task.finish() == "new body done"
    assert log == ["in the helper", "back in the old body", ("new", "doubling", 6)]


async def test_a_swap_asked_before_the_task_runs_waits_for_it_to_allow() -> None:
    log: list[Any] = []
    async with node():
        task = Task(counting, log)
        assert task.hot_swap(doubling, log) == 0  # (the task has not run yet)
        task.send(3)
        assert await task.finish() == "new body done"
    assert log == [("new", "doubling", 6)]


async def test_hot_swap_refusals() -> None:
    async with node():
        task = Task(counting, [])
        await trio.testing.wait_all_tasks_blocked()
        assert task.hot_swap(lambda task=None: None) == -1  # not a generator function
        assert task.hot_swappable(True) == -1  # only the task itself may
        task.terminate()
        await task.finish()
        assert task.hot_swap(doubling, []) == -1  # no longer alive


async def test_hot_swap_from_a_plain_thread() -> None:
    log: list[Any] = []
    async with node():
        task = Task(counting, log)
        await trio.testing.wait_all_tasks_blocked()
        assert await trio.to_thread.run_sync(task.hot_swap, doubling, log) == 0
        task.send(3)
        assert await task.finish() == "new body done"
    assert log == [("new", "doubling", 6)]
