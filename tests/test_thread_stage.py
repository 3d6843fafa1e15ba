"""The file service's worker-thread stage (``services/files/thread_stage.py``).

Real threads: the real clock, every test bounded by ``trio.fail_after``."""

from __future__ import annotations

import threading

import pytest
import trio

from triopycos.services.files.thread_stage import ThreadStage, thread_stage

LIMIT = 10


def _same(x: int) -> int:
    return x


async def test_results_come_back_in_order_from_one_thread() -> None:
    threads: set[int] = set()

    def square(x: int) -> int:
        threads.add(threading.get_ident())
        return x * x

    with trio.fail_after(LIMIT):
        stage: ThreadStage[int, int]
        async with thread_stage(square, 3) as stage:
            got = []
            for x in range(10):
                if stage.pending == stage.depth:
                    got.append(await stage.get())
                stage.submit_nowait(x)
            while stage.pending:
                got.append(await stage.get())
    assert got == [x * x for x in range(10)]
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_no_more_than_depth_jobs_are_held() -> None:
    stage: ThreadStage[int, int]
    with trio.fail_after(LIMIT):
        async with thread_stage(_same, 2) as stage:
            stage.submit_nowait(1)
            stage.submit_nowait(2)
            with pytest.raises(trio.WouldBlock):
                stage.submit_nowait(3)
            assert await stage.get() == 1
            stage.submit_nowait(3)
            assert [await stage.get(), await stage.get()] == [2, 3]
            with pytest.raises(RuntimeError, match="no job pending"):
                await stage.get()
    with pytest.raises(ValueError):
        ThreadStage(_same, 0)


async def test_an_error_comes_out_at_its_get_and_later_jobs_do_not_run() -> None:
    ran: list[int] = []

    def job(x: int) -> int:
        ran.append(x)
        if x == 2:
            raise OSError(28, "No space left on device")
        return x

    with trio.fail_after(LIMIT):
        async with thread_stage(job, 4) as stage:
            for x in (1, 2, 3, 4):
                stage.submit_nowait(x)
            assert await stage.get() == 1
            with pytest.raises(OSError, match="No space"):
                await stage.get()
            # The jobs behind it are not run, and say so (never a get() that hangs).
            for _ in (3, 4):
                with pytest.raises(RuntimeError, match="earlier job"):
                    await stage.get()
            assert stage.pending == 0
    assert ran == [1, 2]


async def test_none_is_a_job_like_any_other() -> None:
    stage: ThreadStage[int | None, bool]
    with trio.fail_after(LIMIT):
        async with thread_stage(_is_none, 2) as stage:
            stage.submit_nowait(None)
            stage.submit_nowait(1)
            assert [await stage.get(), await stage.get()] == [True, False]


def _is_none(x: int | None) -> bool:
    return x is None


async def test_leaving_by_cancellation_waits_for_the_running_job_and_drops_the_rest() -> None:
    ran: list[int] = []
    stages: list[ThreadStage[int, None]] = []
    started = threading.Event()

    def job(x: int) -> None:
        if x == 1:
            started.set()
            # Runs until the block is being left: the exit must wait for it.
            assert stages[0]._stopping.wait(LIMIT)
        ran.append(x)

    with trio.fail_after(LIMIT):
        with trio.CancelScope() as scope:
            async with thread_stage(job, 3) as stage:
                stages.append(stage)
                for x in (1, 2, 3):
                    stage.submit_nowait(x)
                await trio.to_thread.run_sync(started.wait)
                scope.cancel()
                await trio.sleep_forever()
        # Out of the block: the running job has finished, the others never ran.
        assert ran == [1]
    assert scope.cancelled_caught


async def test_an_exception_of_the_block_comes_out_as_itself() -> None:
    stage: ThreadStage[int, int]
    with trio.fail_after(LIMIT), pytest.raises(KeyError):
        async with thread_stage(_same, 1) as stage:
            stage.submit_nowait(1)
            raise KeyError("mine")
