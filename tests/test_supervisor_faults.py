"""Supervisors under random fault schedules (a seeded property test), on the
virtual network under the autojump clock.

One run: a node ``boss`` runs a supervisor (random strategy and intensity) of a local
child, two children by RPS name (served by three worker nodes) and a nested
supervisor with a local and a remote child.  For ``CHAOS`` seconds, at random
instants: worker nodes crash (loudly or silently) and come back as new
incarnations, ``boss`` is cut off from a worker for less or more than
``peer_timeout``, children are told to fail or to return, and now and then the
supervisor is terminated.  Then every cut heals, every worker is up and peered with
``boss``, and once things have settled:

* if the supervisor has ended (gave up, or was terminated), no child runs anywhere;
* else no child runs twice, and every permanent child of a running supervisor runs.

Children are counted by the children themselves (``Lives``), on whatever node they
run, and none may run that no supervisor ever had as a child (one whose start
call's reply was lost to a fault: the call's link ends it).
Each failure names its seed; a run replays exactly in a fresh ``trio.run`` on a
``MockClock``.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from fault_scenarios import DETECTION, LIMITS
from supervision_helpers import Lives, make_worker, open_nodes, use
from trio.testing import MockClock

from triopycos import RPS, ChildSpec, Pycos, Supervisor, Task
from triopycos._supervising import _Child, _Run

SEEDS = range(24)
CHAOS = 90.0
#: After the last fault: heal, restart, re-peer, then this long for restarts,
#: reconnections and the reapers (every RETRY) to settle.
SETTLE = 3 * DETECTION
LATENCY = 0.002
WORKERS = 3


@dataclass
class Outcome:
    seed: int
    ended: bool = False  # the supervisor is no longer running
    running: dict[Hashable, int] = field(default_factory=dict)
    expected: set[Hashable] = field(default_factory=set)  # must run once
    orphans: list[Task] = field(default_factory=list)
    restarts: int = 0
    faults: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        found = []
        if self.ended and self.running:
            found.append(f"children run on after the supervisor ended: {self.running}")
        if not self.ended:
            twice = {k: n for k, n in self.running.items() if n > 1}
            if twice:
                found.append(f"children run twice: {twice}")
            missing = self.expected - set(self.running)
            if missing:
                found.append(f"permanent children not running: {sorted(map(str, missing))}")
        return found


class Scenario:
    def __init__(self, seed: int, published: set[Task]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.lives = Lives()
        self.published = published
        self.workers: list[Pycos | None] = [None] * WORKERS
        self.incarnations = [0] * WORKERS
        self.addresses: list[tuple[str, int]] = []
        self.outcome = Outcome(seed)

    def note(self, text: str) -> None:
        self.outcome.faults.append(f"{trio.current_time():8.3f} {text}")

    async def run(self) -> Outcome:
        async with open_nodes(self.seed) as nodes:
            self.nodes = nodes
            self.boss = await nodes.open("boss", limits=LIMITS)
            for i in range(WORKERS):
                await self.start_worker(i)
            self.sup = self.make_supervisor()
            end = trio.current_time() + CHAOS
            while trio.current_time() < end:
                await trio.sleep(self.rng.uniform(0.5, 8.0))
                await self.fault()
            self.note("restore")
            nodes.net.heal()
            for i in range(WORKERS):
                if self.workers[i] is None:
                    await self.start_worker(i)
            for worker in self.workers:
                assert worker is not None
                with trio.move_on_after(2 * LIMITS.connect_timeout):
                    await self.boss.peer(worker.location)
            await trio.sleep(SETTLE)
            self.check()
            if self.sup.task.is_alive():
                self.sup.terminate()
                await self.sup.task.finish()
        return self.outcome

    def make_supervisor(self) -> Supervisor:
        rng = self.rng
        worker = make_worker(self.lives)
        inner = [
            ChildSpec("inner-local", worker, ("inner-local",)),
            ChildSpec("inner-svc", "worker", ("inner-svc",), locate_timeout=5),
        ]
        specs = [
            ChildSpec("local", worker, ("local",)),
            ChildSpec("svc-a", "worker", ("svc-a", True), locate_timeout=5),
            ChildSpec("svc-b", "worker", ("svc-b",), None, "transient", locate_timeout=5),
            ChildSpec(
                "inner",
                Supervisor,
                (inner,),
                {"strategy": rng.choice(["one_for_one", "one_for_all", "rest_for_one"])},
            ),
        ]
        strategy = rng.choice(["one_for_one", "one_for_all", "rest_for_one"])
        max_restarts = rng.randint(3, 10)
        max_seconds = rng.uniform(5, 30)
        self.note(f"supervisor {strategy} {max_restarts} in {max_seconds:.1f} s")
        with use(self.boss):
            return Supervisor(specs, strategy, max_restarts, max_seconds)  # type: ignore[arg-type]

    async def start_worker(self, i: int) -> None:
        self.incarnations[i] += 1
        again: dict[str, Any] = {}
        if self.addresses[i:]:
            addr, port = self.addresses[i]
            again = {"node": addr, "tcp_port": port}
        node = await self.nodes.open(f"w{i}.{self.incarnations[i]}", limits=LIMITS, **again)
        if not again:
            self.addresses.append((node.location.addr, node.location.port))
        with use(node):
            assert RPS(make_worker(self.lives), name="worker").register() == 0
        self.nodes.net.set_link(self.boss, node, latency=LATENCY)
        with trio.move_on_after(2 * LIMITS.connect_timeout):
            await self.boss.peer(node.location)
        self.workers[i] = node
        self.note(f"w{i}.{self.incarnations[i]} up")

    async def fault(self) -> None:
        rng = self.rng
        kind = rng.choices(
            ["crash", "restart", "cut", "heal", "fail", "return", "terminate"],
            [3, 3, 3, 3, 6, 1, 0.15],
        )[0]
        i = rng.randrange(WORKERS)
        worker = self.workers[i]
        if kind == "crash" and worker is not None:
            silent = rng.random() < 0.3
            self.note(f"crash w{i}.{self.incarnations[i]}{' silently' if silent else ''}")
            self.nodes.net.crash(worker, silent=silent)
            self.workers[i] = None
        elif kind == "restart" and worker is None:
            await self.start_worker(i)
        elif kind == "cut" and worker is not None:
            self.note(f"cut boss from w{i}")
            self.nodes.net.partition(self.boss, worker)
        elif kind == "heal":
            self.note("heal")
            self.nodes.net.heal()
        elif kind in ("fail", "return"):
            running = sorted((str(n), n) for n, tasks in self.lives.live.items() if tasks)
            if running:
                _, name = rng.choice(running)
                task = rng.choice(self.lives.live[name])
                self.note(f"tell {name} ({task}) to {kind}")
                task.send(kind)
        elif kind == "terminate":
            self.note("terminate the supervisor")
            self.sup.terminate()

    def check(self) -> None:
        out = self.outcome
        out.ended = not self.sup.task.is_alive()
        out.restarts = len(self.lives.starts) - 5
        for name, tasks in self.lives.live.items():
            known = [t for t in tasks if t in self.published]
            out.orphans += [t for t in tasks if t not in self.published]
            if known:
                out.running[name] = len(known)
        if not out.ended:
            out.expected = {"local", "svc-a"}
            inner = self.sup.children().get("inner")
            if inner is not None and inner.is_alive():
                out.expected |= {"inner-local", "inner-svc"}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> set[Task]:
    """Every task any supervisor has had as a child (to find orphans: children of
    calls whose reply was lost, which no supervisor ever had)."""
    seen: set[Task] = set()
    publish = _Run.publish

    def recording(self: _Run, child: _Child) -> None:
        publish(self, child)
        if isinstance(child.key, Task):
            seen.add(child.key)

    monkeypatch.setattr(_Run, "publish", recording)
    return seen


async def test_supervisors_under_random_faults(
    published: set[Task], autojump_clock: MockClock
) -> None:
    outcomes = []
    for seed in SEEDS:
        published.clear()
        outcome = await Scenario(seed, published).run()
        outcomes.append(outcome)
        problems = outcome.violations()
        assert not problems, f"seed {seed}: {problems}\n" + "\n".join(outcome.faults)
    # The schedules must have exercised both ends and real restarts.
    assert any(o.ended for o in outcomes) and not all(o.ended for o in outcomes)
    assert sum(o.restarts for o in outcomes) > 10 * len(outcomes)
    # No child that no supervisor ever knew of (a call whose reply was lost) runs
    # on: its node ended it by the link the call made.
    assert [o.orphans for o in outcomes if o.orphans] == []
