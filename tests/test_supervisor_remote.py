"""Supervisors with children on other nodes (RPS children), on the virtual network
under the autojump clock: restarts there, a child's node crashing (loud and
silent), a partition noticed by ``peer_timeout``, giving up while a child is out of
reach, and the supervisor's end reaching remote children."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing
from fault_scenarios import DETECTION, LIMITS
from supervision_helpers import Lives, Nodes, Statuses, known, make_worker, open_nodes, use
from trio.testing import MockClock

from triopycos import (
    RPS,
    ChildSpec,
    Pycos,
    Supervisor,
    SupervisorGaveUp,
    Task,
    _reaper,
)

LATENCY = 0.01


@dataclass
class Cluster:
    nodes: Nodes
    boss: Pycos
    workers: list[Pycos]
    lives: Lives

    def where(self, name: str) -> Pycos:
        """The worker node running child ``name`` now."""
        location = self.lives.current(name).location
        (node,) = [w for w in self.workers if w.location == location]
        return node

    def other(self, node: Pycos) -> Pycos:
        (other,) = [w for w in self.workers if w is not node]
        return other


@asynccontextmanager
async def cluster(workers: int = 2, seed: int = 5) -> AsyncIterator[Cluster]:
    """A node "boss" peered with nodes w1, w2... that each serve the RPS "worker"."""
    lives = Lives()
    async with open_nodes(seed) as nodes:
        boss = await nodes.open("boss", limits=LIMITS)
        started = []
        for i in range(1, workers + 1):
            node = await nodes.open(f"w{i}", limits=LIMITS)
            with use(node):
                assert RPS(make_worker(lives), name="worker").register() == 0
            nodes.net.set_link(boss, node, latency=LATENCY)
            assert await boss.peer(node.location) == 0
            started.append(node)
        yield Cluster(nodes, boss, started, lives)


async def locate_rps(node: Pycos, where: Pycos) -> RPS:
    async def find(task: Task) -> RPS | None:
        return await RPS.locate("worker", where.location, timeout=5)

    found = await node.spawn(find).finish()
    assert isinstance(found, RPS)
    return found


async def test_an_rps_child_is_restarted_on_its_node_and_ended_with_its_supervisor(
    autojump_clock: MockClock,
) -> None:
    async with cluster() as c:
        w1 = c.workers[0]
        rps = await locate_rps(c.boss, w1)
        with use(c.boss):
            sup = Supervisor([ChildSpec("r", rps, args=("r",)), ChildSpec("n", "worker", ("n",))])
        await known(sup, "r", "n")
        first = c.lives.current("r")
        assert first.location == w1.location
        assert sup.children()["r"] == first
        first.send("fail")
        await c.lives.started_times("r", 2)
        await known(sup, "r")
        assert c.lives.current("r").location == w1.location
        assert sup.children()["r"] == c.lives.current("r") != first
        watcher = Statuses(c.boss, sup.task)
        sup.terminate()
        status = await watcher.first()
        assert status.type is GeneratorExit
        # Its end is told once the remote children have ended.
        assert c.lives.running() == {}


@pytest.mark.parametrize("silent", [False, True])
async def test_a_child_lost_with_its_node_restarts_on_another_that_serves_it(
    silent: bool, autojump_clock: MockClock
) -> None:
    async with cluster() as c:
        with use(c.boss):
            sup = Supervisor([ChildSpec("svc", "worker", args=("svc", True))])
        await known(sup, "svc")
        doomed = c.where("svc")
        crashed_at = trio.current_time()
        c.nodes.net.crash(doomed, silent=silent)
        took = await c.lives.until(
            lambda: c.lives.running().get("svc") == 1 and c.lives.count("svc") == 2
        )
        moved = c.lives.current("svc")
        assert moved.location == c.other(doomed).location
        if silent:
            assert took <= DETECTION + 1
        else:
            # A reset is seen one latency later; the restart is a locate and a call.
            assert took <= 6 * LATENCY
        assert trio.current_time() - crashed_at == took

        async def find(task: Task) -> Task | None:
            return await Task.locate("svc", timeout=5)

        assert await c.boss.spawn(find).finish() == moved
        sup.terminate()
        await sup.task.finish()


async def test_a_partitioned_child_moves_and_the_old_one_is_ended_behind_the_cut(
    autojump_clock: MockClock,
) -> None:
    """The child is linked with its supervisor's anchor by the call that started it:
    its own node ends it when it loses the supervisor's node, while the supervisor
    restarts it on the other side of the cut."""
    async with cluster() as c:
        with use(c.boss):
            sup = Supervisor([ChildSpec("svc", "worker", args=("svc",))])
        await known(sup, "svc")
        old = c.lives.current("svc")
        cut = c.where("svc")
        c.nodes.net.partition(c.boss, cut)
        took = await c.lives.until(lambda: c.lives.count("svc") >= 2)
        assert took <= DETECTION
        assert sup.children()["svc"] != old
        ended_for = await c.lives.until(
            lambda: c.lives.running() == {"svc": 1} and old not in c.lives.live["svc"]
        )
        assert took + ended_for <= DETECTION  # before the cut heals
        c.nodes.net.heal()
        await trio.sleep(30)
        assert c.lives.count("svc") == 2  # and nothing else restarted
        assert not _reaper._reapers[c.boss].strays
        sup.terminate()
        await sup.task.finish()
        assert c.lives.running() == {}


@pytest.mark.parametrize("cut_for", [3.0, 20.0])
async def test_no_child_runs_on_after_its_supervisor_gave_up_out_of_reach(
    cut_for: float, autojump_clock: MockClock
) -> None:
    """The supervisor gives up while a remote child is cut off: for less than
    peer_timeout (the terminate waits on the connection) or longer (the connection
    is lost; the reaper ends the child when the nodes reconnect)."""
    async with cluster() as c:
        w1 = c.workers[0]
        rps = await locate_rps(c.boss, w1)
        with use(c.boss):
            sup = Supervisor(
                [
                    ChildSpec("remote", rps, args=("remote",)),
                    ChildSpec("local", make_worker(c.lives), ("local",)),
                ],
                max_restarts=0,
            )
        watcher = Statuses(c.boss, sup.task)
        await known(sup, "remote", "local")
        c.nodes.net.partition(c.boss, w1)
        c.lives.current("local").send("fail")
        status = await watcher.first()
        assert status.type is SupervisorGaveUp
        gave_up_at = trio.current_time()
        assert c.lives.running() == {"remote": 1}
        await trio.sleep(max(0.0, cut_for - (trio.current_time() - gave_up_at)))
        c.nodes.net.heal()
        await c.lives.until(lambda: c.lives.running() == {})
        assert trio.current_time() - gave_up_at <= cut_for + 10


async def test_one_for_all_stops_remote_children_and_waits_for_them(
    autojump_clock: MockClock,
) -> None:
    async with cluster() as c:
        w1, w2 = c.workers
        r1, r2 = await locate_rps(c.boss, w1), await locate_rps(c.boss, w2)
        with use(c.boss):
            sup = Supervisor(
                [
                    ChildSpec("a", r1, args=("a",)),
                    ChildSpec("b", make_worker(c.lives), args=("b",)),
                    ChildSpec("c", r2, args=("c",)),
                ],
                strategy="one_for_all",
            )
        await c.lives.until(lambda: len(c.lives.running()) == 3)
        c.lives.current("a").send("fail")
        await c.lives.until(lambda: len(c.lives.starts) == 6 and len(c.lives.running()) == 3)
        assert [name for _, name, _ in c.lives.ends] == ["a", "c", "b"]
        # Every new one started after the last old one had ended.
        assert min(t for t, _, _ in c.lives.starts[3:]) >= max(t for t, _, _ in c.lives.ends)
        sup.terminate()
        await sup.task.finish()
        assert c.lives.running() == {}


async def test_a_stray_of_a_node_that_restarted_is_forgotten(autojump_clock: MockClock) -> None:
    async with cluster(workers=1) as c:
        (w1,) = c.workers
        where = w1.location
        with use(c.boss):
            sup = Supervisor([ChildSpec("svc", "worker", ("svc",), locate_timeout=60)])
        await known(sup, "svc")
        c.nodes.net.crash(w1)
        await c.lives.until(lambda: c.lives.running() == {})
        await trio.sleep(1)
        assert sup.children() == {"svc": None}  # looking for a node serving it
        strays = _reaper._reapers[c.boss].strays
        assert len(strays) == 1
        # The node comes back (a new incarnation at the same address and port).
        again = await c.nodes.open("w1-again", node=where.addr, tcp_port=where.port, limits=LIMITS)
        with use(again):
            assert RPS(make_worker(c.lives), name="worker").register() == 0
        assert await c.boss.peer(again.location) == 0
        await c.lives.started_times("svc", 2)
        await trio.sleep(2 * _reaper.RETRY)
        assert not strays and _reaper._reapers[c.boss].task is None
        sup.terminate()


async def test_a_child_whose_call_reply_was_lost_does_not_run_on(
    autojump_clock: MockClock,
) -> None:
    """The call's reply is lost to a partition: the supervisor never hears of the
    child it started, but the child is linked with the supervisor's anchor by the
    call itself, so its node ends it on losing the supervisor's node."""
    async with cluster(workers=1) as c:
        (w1,) = c.workers
        with use(c.boss):
            sup = Supervisor([ChildSpec("svc", "worker", ("svc",), locate_timeout=60)])
        await c.lives.started_times("svc", 1)
        # The child runs on w1; the reply to the call is still on its way.
        assert sup.children() == {"svc": None}
        c.nodes.net.partition(c.boss, w1)
        await trio.sleep(DETECTION)
        c.nodes.net.heal()
        with trio.move_on_after(60):
            await c.lives.until(
                lambda: c.lives.running() == {"svc": 1} and c.lives.count("svc") == 2
            )
        assert c.lives.running() == {"svc": 1}
        sup.terminate()
