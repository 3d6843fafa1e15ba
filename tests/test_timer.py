"""The node's timer (timeouts without a cancel scope each) and the waits built on it:
``receive(timeout)``, request timeouts, pushed RPS results."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from triopycos import Task, open_pycos
from triopycos.services.timer import Parked, Timer


class Note:
    """An expiry that notes when it fired."""

    def __init__(self, fired: list[tuple[str, float]], name: str) -> None:
        self.done = False
        self.name = name
        self.fired = fired

    def expire(self) -> None:
        self.done = True
        self.fired.append((self.name, trio.current_time()))


async def test_timer_fires_each_expiry_once_at_its_deadline(autojump_clock: MockClock) -> None:
    timer = Timer()
    fired: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        start = trio.current_time()
        timer.add(start + 5, Note(fired, "five"))
        timer.add(start + 2, Note(fired, "two"))
        ended = Note(fired, "ended")
        ended.done = True  # its wait ended first: never fires
        timer.add(start + 1, ended)
        await trio.sleep(1.5)
        # Added while the timer sleeps until t+2: an earlier deadline wakes it.
        timer.add(trio.current_time() + 0.25, Note(fired, "quarter"))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in fired] == ["quarter", "two", "five"]
    assert [at - start for _, at in fired] == pytest.approx([1.75, 2, 5])


async def test_timer_compacts_ended_expiries_and_keeps_live_ones(
    autojump_clock: MockClock,
) -> None:
    timer = Timer()
    fired: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        start = trio.current_time()
        live = Note(fired, "live")
        timer.add(start + 100, live)
        for _ in range(10_000):
            ended = Note(fired, "ended")
            timer.add(start + 50, ended)
            ended.done = True
        assert len(timer._heap) <= 2 * 256  # compacted along the way
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in fired] == ["live"]
    assert fired[0][1] - start == pytest.approx(100)


async def test_parked_wake_timeout_and_cancel(autojump_clock: MockClock) -> None:
    timer = Timer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        woken = Parked(False)

        async def wake_later() -> None:
            await trio.sleep(1)
            assert woken.wake(True)

        nursery.start_soon(wake_later)
        start = trio.current_time()
        assert await woken.wait(timer, 10) is True
        assert trio.current_time() - start == pytest.approx(1)

        start = trio.current_time()
        assert await Parked(False).wait(timer, 3) is False
        assert trio.current_time() - start == pytest.approx(3)

        cancelled = Parked(False)
        with trio.move_on_after(2):
            await cancelled.wait(timer, None)
        assert cancelled.done and cancelled.value is False
        assert not cancelled.wake(True)  # too late: nothing happens
        assert cancelled.value is False
        nursery.cancel_scope.cancel()


async def test_parked_throw_raises_in_the_waiting_task(autojump_clock: MockClock) -> None:
    timer = Timer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        parked = Parked()

        async def throw_later() -> None:
            await trio.sleep(1)
            assert parked.throw(KeyError("thrown"))

        nursery.start_soon(throw_later)
        with pytest.raises(KeyError):
            await parked.wait(timer, 5)
        assert not parked.throw(KeyError("again")) and not parked.wake(1)
        # Woken before it waited: the wait gives the value after a checkpoint.
        early = Parked()
        assert early.wake("early")
        assert await early.wait(timer, None) == "early"
        nursery.cancel_scope.cancel()


async def test_receive_timeout_never_loses_a_later_message(autojump_clock: MockClock) -> None:
    results: list[Any] = []

    async def body(task: Task) -> None:
        results.append(await task.receive(timeout=1, alarm_value="alarm"))
        results.append(await task.receive(timeout=5))
        with trio.move_on_after(1):
            await task.receive(timeout=10)  # cancelled: nothing taken
        results.append(await task.receive(timeout=5))

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(body)
        await trio.testing.wait_all_tasks_blocked()
        # The race, made deterministic: the timer fires (as its task would), and a
        # message comes before the woken task runs: it waits in the mailbox.
        assert t._waiter is not None
        t._waiter.expire()
        assert t.send("after the timeout") == 0
        await trio.sleep(2.5)
        assert t.send("after the cancel") == 0
    assert results == ["alarm", "after the timeout", "after the cancel"]


async def test_messages_handed_to_a_waiting_task_keep_their_order(
    autojump_clock: MockClock,
) -> None:
    async def body(task: Task) -> list[Any]:
        return [await task.receive(timeout=5) for _ in range(4)]

    async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False):
        t = Task(body)
        await trio.testing.wait_all_tasks_blocked()
        # The first rides on the wake-up, the others wait in the mailbox.
        assert [t.send(i) for i in range(4)] == [0, 0, 0, 0]
        assert await t.finish() == [0, 1, 2, 3]
