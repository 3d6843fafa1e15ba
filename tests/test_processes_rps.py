"""RPS and channels across real processes on loopback (IPv4, and one IPv6 case).

The node processes run tests/rps_node_program.py and are started only through
tests/procs.py (loopback only, bounded in time, killed at the end).  Real sockets and
the real clock; every test is bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from procs import NodeProcess, open_node_process

from triopycos import (
    RPS,
    Channel,
    Limits,
    Location,
    MonitorStatus,
    PeerLost,
    PeerStatus,
    Pycos,
    Task,
    open_pycos,
)

PROGRAM = str(Path(__file__).with_name("rps_node_program.py"))
SECRET = "rps-process-secret"
LIMIT = 30
#: 1000 calls of an instant RPS, each waiting for its result, must end within this.
THOUSAND_CALLS_LIMIT = 5


@contextlib.asynccontextmanager
async def node_process(
    name: str, *args: str, node: str = "127.0.0.1"
) -> AsyncIterator[tuple[NodeProcess, Location]]:
    """A node process running rps_node_program.py with ``args``, and its location."""
    async with open_node_process([PROGRAM, name, SECRET, *args], node=node) as proc:
        with trio.fail_after(LIMIT):
            await proc.wait_for_output("ready ")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ready "))
        _, host, port_text = line.split()
        yield proc, Location(host, int(port_text))


def serving(name: str = "server", node: str = "127.0.0.1") -> Any:
    """The process that registers the RPSs and the channel ``news``."""
    return node_process(name, "serve", node=node)


def subscribing(name: str, owner: Location) -> Any:
    """A process whose one task subscribes to ``news`` at ``owner``."""
    return node_process(name, "subscribe", owner.addr, str(owner.port))


def local_node(name: str, node: str = "127.0.0.1") -> Any:
    return open_pycos(name=name, node=node, tcp_port=0, discover_peers=False, secret=SECRET)


async def locate_rps(name: str, where: Location) -> RPS:
    found = await RPS.locate(name, where, timeout=10)
    assert found is not None, f"RPS {name!r} not found at {where}"
    return found


async def subscribe_and_collect(task: Task, channel: Channel, count: int) -> list[Any]:
    assert await channel.subscribe(task, timeout=10) == 0
    return [await task.receive(timeout=10) for _ in range(count)]


async def test_rps_calls_across_processes() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (_, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client() -> list[Any]:
                double = await locate_rps("double", where)
                fails = await locate_rps("fails", where)
                slow = await locate_rps("slow", where)
                instant = await double(21)
                failing = await fails("no good")
                waiting = await slow()
                assert instant is not None and failing is not None and waiting is not None
                assert instant.location == where
                assert waiting.send("wake up") == 0
                return [
                    await instant.finish(timeout=5),
                    await failing.finish(timeout=5),
                    await waiting.finish(timeout=5),
                ]

            instant, failing, waiting = await here.spawn(client).finish()
            assert instant == 42
            assert isinstance(failing, MonitorStatus) and failing.type is ValueError
            assert "ValueError: no good" in str(failing.value)
            assert waiting == "wake up"


async def test_thousand_instant_calls_lose_no_result() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (_, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client() -> tuple[list[Any], float]:
                double = await locate_rps("double", where)
                results: list[Any] = []
                start = trio.current_time()
                with trio.fail_after(THOUSAND_CALLS_LIMIT):
                    for i in range(1000):
                        rtask = await double(i)
                        results.append(None if rtask is None else await rtask.finish(timeout=5))
                return results, trio.current_time() - start

            results, elapsed = await here.spawn(client).finish()
            assert results == [2 * i for i in range(1000)]
            assert elapsed < THOUSAND_CALLS_LIMIT


async def test_monitor_gets_statuses_of_instant_and_failing_tasks() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (_, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client(task: Task) -> tuple[list[Task], list[MonitorStatus]]:
                double = await locate_rps("double", where)
                fails = await locate_rps("fails", where)
                assert double.monitor(task) == 0 and fails.monitor(task) == 0
                created = [await double(2), await double(3), await fails("bad input")]
                assert all(isinstance(t, Task) for t in created)
                statuses = [await task.receive(timeout=5) for _ in created]
                return [t for t in created if t is not None], statuses

            created, statuses = await here.spawn(client).finish()
            assert all(isinstance(s, MonitorStatus) for s in statuses)
            assert sorted(created, key=repr) == sorted((s.info for s in statuses), key=repr)
            by_task = {repr(s.info): s for s in statuses}
            doubled = [by_task[repr(t)] for t in created[:2]]
            assert [(s.type, s.value) for s in doubled] == [(StopIteration, 4), (StopIteration, 6)]
            failed = by_task[repr(created[2])]
            assert failed.type is ValueError and "ValueError: bad input" in str(failed.value)


async def test_close_terminates_the_created_waiting_task() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (_, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client(task: Task) -> tuple[Any, Any, Any]:
                slow = await locate_rps("slow", where)
                assert slow.monitor(task) == 0
                waiting = await slow()
                assert waiting is not None
                assert slow.close() == 0
                status = await task.receive(timeout=5)
                return status, await waiting.finish(timeout=5), await slow()

            status, value, after_close = await here.spawn(client).finish()
            assert isinstance(status, MonitorStatus) and status.type is GeneratorExit
            assert value is None  # a terminated task's value
            assert after_close is None


async def test_bad_arguments_give_none_and_the_process_keeps_serving() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (proc, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client() -> tuple[list[Any], Any]:
                double = await locate_rps("double", where)
                bad = [
                    await double(1, 2, 3),  # too many arguments
                    await double(),  # too few
                    await double(y=1),  # unknown keyword
                ]
                again = await locate_rps("double", where)
                rtask = await again(5)
                assert rtask is not None
                return bad, await rtask.finish(timeout=5)

            bad, value = await here.spawn(client).finish()
            assert bad == [None, None, None]
            assert value == 10
            with trio.fail_after(5):  # the serving process logged why the calls failed
                await proc.wait_for_output("call of RPS('double')", stream="stderr")
            assert proc.returncode is None


async def test_channel_fan_out_to_this_and_another_process() -> None:
    with trio.fail_after(LIMIT):
        async with (
            serving() as (_, where),
            subscribing("remote-sub", where) as (sub_proc, _),
            local_node("here") as here,
        ):
            assert await here.peer(where) == 0
            with trio.fail_after(10):
                await sub_proc.wait_for_output("subscribed")
            news = await Channel.locate("news", where, timeout=10)
            assert news is not None
            locals_ = [here.spawn(subscribe_and_collect, news, 2) for _ in range(2)]
            assert await news.deliver("first", timeout=10, n=3) == 3
            assert news.send("second") == 0
            for sub in locals_:
                assert await sub.finish() == ["first", "second"]
            with trio.fail_after(10):
                await sub_proc.wait_for_output("got 'second'")
            assert sub_proc.stdout.count("got ") == 2
            assert sub_proc.stdout.index("got 'first'") < sub_proc.stdout.index("got 'second'")


async def test_killed_subscriber_process_is_dropped_by_the_channel_owner() -> None:
    with trio.fail_after(LIMIT):
        async with serving() as (owner, where), local_node("here") as here:
            assert await here.peer(where) == 0
            news = await Channel.locate("news", where, timeout=10)
            assert news is not None
            local = here.spawn(subscribe_and_collect, news, 2)
            async with subscribing("victim", where) as (victim, _):
                with trio.fail_after(10):
                    await victim.wait_for_output("subscribed")
                assert await news.deliver("before", timeout=10, n=2) == 2
                with trio.fail_after(10):
                    await victim.wait_for_output("got 'before'")
                victim._kill_group(signal.SIGKILL)
                assert await victim.wait() == -signal.SIGKILL
            with trio.fail_after(10):  # the owner saw its peer go
                await owner.wait_for_output("offline victim")
            start = trio.current_time()
            assert await news.deliver("after", timeout=10) == 1
            assert trio.current_time() - start < 1  # not held up by the lost subscriber
            assert await local.finish() == ["before", "after"]


#: The watching node's peer_timeout in the loss tests: a stopped process is noticed
#: within this and one heartbeat interval (a third of it).
LOSS_PEER_TIMEOUT = 2.0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
async def test_rps_monitor_hears_peer_lost_when_the_serving_process_is_lost(
    sig: signal.Signals,
) -> None:
    """kill -9 closes the connection (seen at once); SIGSTOP leaves it silent (seen
    after peer_timeout).  Either way the watcher gets PeerLost once and finish()
    returns None at once; a stopped process that goes on later does not make the
    watcher hear of its task a second time."""
    limits = Limits(peer_timeout=LOSS_PEER_TIMEOUT, reconnect_delay=0.2)
    with trio.fail_after(LIMIT):
        async with (
            serving() as (proc, where),
            open_pycos(
                name="here",
                node="127.0.0.1",
                tcp_port=0,
                discover_peers=False,
                secret=SECRET,
                limits=limits,
            ) as here,
        ):
            assert await here.peer(where) == 0
            back = trio.Event()

            async def peer_watch(task: Task) -> None:
                task.set_daemon()
                online = 0
                while True:
                    status = await task.receive()
                    if status.status == PeerStatus.Online:
                        online += 1
                        if online == 2:
                            back.set()

            here.peer_status(here.spawn(peer_watch))
            statuses: list[Any] = []
            told = trio.Event()

            async def watcher(task: Task) -> None:
                task.set_daemon()
                while True:
                    statuses.append(await task.receive())
                    told.set()

            watching = here.spawn(watcher)

            async def client() -> tuple[Task, Any, float, float]:
                slow = await locate_rps("slow", where)
                assert slow.monitor(watching) == 0
                waiting = await slow()
                assert waiting is not None
                lost_at = trio.current_time()
                proc._kill_group(sig)
                with trio.fail_after(4 * LOSS_PEER_TIMEOUT):
                    await told.wait()
                took = trio.current_time() - lost_at
                start = trio.current_time()
                value = await waiting.finish()  # no timeout: it must not wait
                return waiting, value, took, trio.current_time() - start

            try:
                waiting, value, took, finish_took = await here.spawn(client).finish()
            finally:
                if sig == signal.SIGSTOP:
                    proc._kill_group(signal.SIGCONT)
            (status,) = statuses
            assert isinstance(status, MonitorStatus)
            assert status.type is PeerLost and status.info == waiting
            assert value is None and finish_took < 0.5
            if sig == signal.SIGKILL:
                assert took < 1  # the closed connection is seen at once
                return
            assert took <= LOSS_PEER_TIMEOUT * 4 / 3 + 1
            # Going on again, the server serves again: a second monitor of the same
            # task, then its end.  Both statuses leave on one connection, the first
            # watcher's first, so once the second has its status the first one's
            # has been dispatched: dropped, since that watcher heard PeerLost.
            await back.wait()

            async def second(task: Task) -> Any:
                assert await task.monitor(waiting) == 0
                assert waiting.send("wake up") == 0
                return await task.receive(timeout=10)

            status = await here.spawn(second).finish()
            assert isinstance(status, MonitorStatus)
            assert (status.type, status.value) == (StopIteration, "wake up")
            assert len(statuses) == 1, statuses


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
async def test_rps_over_ipv6_loopback() -> None:
    with trio.fail_after(LIMIT):
        async with serving("six", node="::1") as (_, where), local_node("here", "::1") as here:
            assert where.addr == "::1"
            assert await here.peer(where) == 0
            assert await call_double(here, where, 4) == 8


async def call_double(here: Pycos, where: Location, x: int) -> Any:
    async def client() -> Any:
        double = await locate_rps("double", where)
        rtask = await double(x)
        assert rtask is not None
        return await rtask.finish(timeout=5)

    return await here.spawn(client).finish()
