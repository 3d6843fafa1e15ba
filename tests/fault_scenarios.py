"""Random fault schedules for triopycos nodes on the virtual network, and the
invariants of docs/network.md they must keep (used by ``tests/test_faults.py``).

One run (``Scenario(seed).run()``, under the autojump clock) is:

* ``nodes`` nodes, fully peered (who opens each connection is random, which decides
  who re-peers after a fault).  On every node, all daemon tasks:

  - ``rx``: a receiver recording every ``("m", sender, seq, meant for)`` message;
  - a sender: to random other nodes' ``rx``, numbered messages by ``send`` (in bursts,
    without a checkpoint in between) or ``deliver`` (recording each 1 it gets);
  - a spawner of short-lived workers (each ends by returning, raising, or being
    terminated) and a watcher monitoring random workers of other nodes, now and then
    terminating one;

* a chaos phase: one driver applies partitions, freezes and crashes (short ones,
  under ``peer_timeout``, and long ones) one after another at random instants (a
  crashed node restarts on its address and port: a new incarnation), while a second
  one keeps changing links' latency, jitter, bandwidth and (datagram) loss;

* then everything is healed, thawed and reset, every pair is peered again, the
  senders stop, the workers are told to stop, and, once all is quiet, the records are
  checked; last, every node leaves.

Every random choice comes from the seed (the faults', the tasks' and, through
``VirtualNetwork(seed=...)``, the network's and trio's scheduler's), so a failing seed
replays exactly in a fresh ``trio.run`` on a ``MockClock``; failures name the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

from triopycos import Limits, Location, MonitorStatus, PeerLost, PeerStatus, Pycos, Task
from triopycos.testing import LinkConfig, VirtualNetwork

__all__ = [
    "BASE_LINK",
    "CRASH_NOTICED",
    "DETECTION",
    "KNOWN_BUGS",
    "LIMITS",
    "PEER_TIMEOUT",
    "SHUTDOWN_LIMIT",
    "Config",
    "Run",
    "Scenario",
    "Violation",
]

PEER_TIMEOUT = 6.0
LIMITS = Limits(peer_timeout=PEER_TIMEOUT, reconnect_delay=0.5, connect_timeout=3.0)
# Leaving ends the daemon tasks (up to goodbye_timeout), then says goodbye (up to
# goodbye_timeout again); a crash is immediate.  Anything much longer is a hang.
SHUTDOWN_LIMIT = 3 * LIMITS.goodbye_timeout + 1.0
BASE_LINK = LinkConfig(latency=0.002)
# A silent peer is dropped within peer_timeout plus one heartbeat interval; a crashed
# one at once, one latency later (the links driver sets at most 0.3 s + 0.2 s jitter).
DETECTION = PEER_TIMEOUT + PEER_TIMEOUT / 3 + 0.1
CRASH_NOTICED = 0.6

# Violations of these kinds are bugs the dedicated strict-xfail tests of
# test_faults.py pin down; the random runs tolerate them (and only them).  When one is
# fixed, its xfail test passes (so fails, being strict): then remove it from here.
KNOWN_BUGS: dict[str, str] = {}


@dataclass(frozen=True)
class Config:
    nodes: int = 4
    chaos: float = 60.0  # seconds of faults
    settle: float = 12.0  # after every fault is undone and every pair re-peered
    quiet: float = 5.0  # after the senders stop, and again after the workers stop
    overlap: bool = False  # faults may overlap (no detection deadlines then)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Run:
    """What one run recorded, and the violations found in it."""

    seed: int
    replay: str = ""  # how to run it again
    log: list[str] = field(default_factory=list)  # faults and peer changes, timed
    # (sender label, receiver label) -> sequence numbers, in arrival order
    received: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # (sender label, receiver label) -> sequence numbers deliver() returned 1 for
    delivered: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    # (sender label, seq, meant for, received by): messages that reached another task
    misdelivered: list[tuple[str, int, str, str]] = field(default_factory=list)
    # (watcher label, worker label) -> when monitor() returned 0 (the first time)
    watches: dict[tuple[str, str], float] = field(default_factory=dict)
    # (watcher label, worker label) -> (arrival time, status type name), in order
    statuses: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)  # worker label -> its end
    crashed: set[str] = field(default_factory=set)  # node incarnation labels
    shutdowns: dict[str, float] = field(default_factory=dict)  # incarnation -> seconds
    # (time, observer incarnation, peer name, "Online"/"Offline"): PeerStatus reports
    peer_events: list[tuple[float, str, str, str]] = field(default_factory=list)
    # (observer incarnation, peer name, from, until, why): an Offline due in that window
    offline_due: list[tuple[str, str, float, float, str]] = field(default_factory=list)
    faults: int = 0
    violations: list[Violation] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.log.append(f"{trio.current_time():8.3f} {text}")

    def unexpected(self) -> list[Violation]:
        return [v for v in self.violations if v.kind not in KNOWN_BUGS]

    def report(self, violations: list[Violation], tail: int = 60) -> str:
        shown = "\n  ".join(map(str, violations[:20]))
        log = "\n  ".join(self.log[-tail:])
        return (
            f"seed {self.seed}: {len(violations)} violation(s)\n  {shown}\n"
            f"last {tail} events of the run:\n  {log}\nreplay: {self.replay}"
        )

    # -- the invariants ------------------------------------------------------------

    def check_messages(self) -> None:
        """1. at most once, 2. FIFO per pair, 4. deliver() == 1 means it arrived;
        and a message reaches the task (the incarnation) it was sent to, or none."""
        for sender, seq, meant_for, got_by in self.misdelivered:
            self._violate("misdelivered", f"{sender} #{seq} for {meant_for} reached {got_by}")
        for (sender, receiver), seqs in self.received.items():
            seen: set[int] = set()
            for previous, seq in zip([0, *seqs], seqs, strict=False):
                if seq in seen:
                    self._violate("duplicate", f"{sender} -> {receiver}: #{seq} received twice")
                elif seq <= previous:
                    self._violate("fifo", f"{sender} -> {receiver}: #{seq} after #{previous}")
                seen.add(seq)
        for (sender, receiver), seqs_ok in self.delivered.items():
            if _incarnation(receiver) in self.crashed:
                continue  # its mailbox died with it: nothing left to compare
            missing = seqs_ok - set(self.received.get((sender, receiver), ()))
            if missing:
                self._violate(
                    "deliver-not-received",
                    f"{sender} -> {receiver}: deliver() gave 1 for {sorted(missing)[:10]} "
                    "but the receiver never got them",
                )

    def check_detection(self) -> None:
        """6. a crashed peer goes Offline at once, a silent one within peer_timeout
        plus one heartbeat interval (docs/network.md, "Failure semantics")."""
        for observer, peer, start, until, why in self.offline_due:
            seen = [
                t
                for t, who, name, status in self.peer_events
                if who == observer and name == peer and status == "Offline" and t >= start
            ]
            if not seen or seen[0] > until:
                late = f"at {seen[0]:.3f}" if seen else "never"
                self._violate(
                    "offline-late",
                    f"{observer} saw {peer} Offline {late}, due in "
                    f"[{start:.3f}, {until:.3f}] ({why})",
                )

    def check_monitors(self) -> None:
        """3. one status per monitored task per monitor: exactly one once every
        worker has ended (whether it ended or its node was lost), at most one ever."""
        for key in sorted(self.statuses.keys() | self.watches.keys()):
            watcher, worker = key
            got = self.statuses.get(key, [])
            watched_at = self.watches.get(key)
            kinds = [kind for _, kind in got]
            if len(got) > 1:
                if kinds[0] == "PeerLost" and "PeerLost" not in kinds[1:]:
                    kind = "status-after-peer-lost"
                elif (
                    kinds[-1] == "PeerLost"
                    and len(got) == 2
                    and watched_at is not None
                    and self.ended.get(worker, float("inf")) <= watched_at
                ):
                    kind = "peer-lost-after-status"
                else:
                    kind = "status-twice"
                self._violate(kind, f"{watcher} monitoring {worker} (since {watched_at}): {got}")
            elif watched_at is not None and not got and _incarnation(watcher) not in self.crashed:
                self._violate(
                    "status-missing",
                    f"{watcher} monitoring {worker} since {watched_at:.3f}: no status "
                    f"(worker ended at {self.ended.get(worker)})",
                )

    def _violate(self, kind: str, detail: str) -> None:
        self.violations.append(Violation(kind, detail))


def _incarnation(label: str) -> str:
    return label.split("/", 1)[0]


@dataclass
class Worker:
    name: str  # registered name, unique in the run
    label: str
    index: int  # node index
    location: Location
    task: Task | None = None


@dataclass
class Incarnation:
    index: int
    label: str
    node: Pycos
    guard: trio.CancelScope
    stop: trio.Event = field(default_factory=trio.Event)
    gone: trio.Event = field(default_factory=trio.Event)
    workers: list[Worker] = field(default_factory=list)
    crashed: bool = False
    leaving_at: float | None = None


class Scenario:
    def __init__(self, seed: int, config: Config | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else Config()
        self.run_ = Run(
            seed,
            replay=f"trio.run(Scenario({seed}, {self.config}).run, "
            "clock=trio.testing.MockClock(autojump_threshold=0))",
        )
        self.rng = random.Random(f"faults {seed}")
        n = self.config.nodes
        self.alive: list[Incarnation | None] = [None] * n
        self.counts = [0] * n
        self.addrs: list[str] = []
        self.locations: list[Location] = []
        self.labels: dict[Task, str] = {}  # receivers' and workers' tasks -> labels
        self.published: list[Worker] = []
        self.sending = True
        self.spawning = True
        self.monitoring = True

    def _rng(self, label: str) -> random.Random:
        return random.Random(f"{self.seed} {label}")

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> Run:
        run = self.run_
        cfg = self.config
        async with VirtualNetwork(seed=self.seed, link=BASE_LINK) as net:
            self.net = net
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for i in range(cfg.nodes):
                    await self._start(i)
                for i in range(cfg.nodes):
                    for j in range(i + 1, cfg.nodes):
                        a, b = (i, j) if self.rng.random() < 0.5 else (j, i)
                        code = await self._node(a).peer(self.locations[b])
                        assert code == 0, f"seed {self.seed}: n{a} cannot peer with n{b}"

                links = trio.CancelScope()
                nursery.start_soon(self._links_driver, links)
                await self._faults_driver(trio.current_time() + cfg.chaos)
                links.cancel()
                run.note("restore: heal, thaw, reset links, re-peer")
                net.heal()
                for addr in self.addrs:
                    net.thaw(addr)
                net.set_link(self.addrs, self.addrs, latency=BASE_LINK.latency)
                with trio.move_on_after(2 * LIMITS.connect_timeout):
                    async with trio.open_nursery() as peering:
                        for i in range(cfg.nodes):
                            peering.start_soon(self._peer_all, i)
                await trio.sleep(cfg.settle)

                self.sending = self.spawning = self.monitoring = False
                await trio.sleep(cfg.quiet)
                for inc in self._incarnations():
                    for worker in inc.workers:
                        if worker.task is not None and worker.task.is_alive():
                            worker.task.send("stop")
                await trio.sleep(cfg.quiet)
                run.check_messages()
                run.check_monitors()
                run.check_detection()

                run.note("leaving")
                for inc in self._incarnations():
                    inc.stop.set()
        return run

    def _incarnations(self) -> Iterator[Incarnation]:
        return (inc for inc in self.alive if inc is not None)

    def _node(self, i: int) -> Pycos:
        inc = self.alive[i]
        assert inc is not None
        return inc.node

    async def _start(self, i: int) -> None:
        ready = trio.Event()
        self.nursery.start_soon(self._incarnation, i, ready)
        await ready.wait()

    async def _incarnation(self, i: int, ready: trio.Event) -> None:
        run = self.run_
        self.counts[i] += 1
        label = f"n{i}.{self.counts[i]}"
        again: dict[str, Any] = {}
        if self.counts[i] > 1:  # a restart, on the same address and port
            again = {"node": self.locations[i].addr, "tcp_port": self.locations[i].port}
        guard = trio.CancelScope()
        inc: Incarnation | None = None
        with guard:
            async with self.net.open_pycos(name=f"n{i}", limits=LIMITS, **again) as node:
                if self.counts[i] == 1:
                    self.addrs.append(node.location.addr)
                    self.locations.append(node.location)
                inc = Incarnation(i, label, node, guard)
                self.alive[i] = inc
                node.peer_status(node.spawn(self._peer_log, inc))
                node.spawn(self._receiver, inc)
                node.spawn(self._sender, inc)
                node.spawn(self._spawner, inc)
                node.spawn(self._watcher, inc)
                run.note(f"{label} up")
                ready.set()
                await inc.stop.wait()
                inc.leaving_at = trio.current_time()
                guard.deadline = inc.leaving_at + SHUTDOWN_LIMIT
        assert inc is not None, f"seed {self.seed}: {label} did not start"
        assert inc.leaving_at is not None
        took = trio.current_time() - inc.leaving_at
        run.shutdowns[label] = took
        run.note(f"{label} {'crashed' if inc.crashed else 'left'} in {took:.3f} s")
        if guard.cancelled_caught:
            run._violate("shutdown", f"{label} had not left {SHUTDOWN_LIMIT} s after leaving")
        inc.gone.set()

    # -- the drivers -------------------------------------------------------------------

    async def _faults_driver(self, end: float) -> None:
        """Faults at random instants until ``end``: one after another (then the
        detection deadlines are checked too), or overlapping (``Config.overlap``)."""
        rng = self.rng
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(rng.uniform(0.5, 4.0))
                if trio.current_time() >= end:
                    return
                self.run_.faults += 1
                duration = rng.choice(
                    [
                        rng.uniform(0.3, 0.6 * PEER_TIMEOUT),  # nobody should notice
                        rng.uniform(0.6 * PEER_TIMEOUT, 1.5 * PEER_TIMEOUT),  # some may
                        rng.uniform(1.5 * PEER_TIMEOUT, 3 * PEER_TIMEOUT),  # all do
                    ]
                )
                kind = rng.choices(["partition", "freeze", "crash"], [5, 3, 2])[0]
                if self.config.overlap:
                    nursery.start_soon(self._fault, kind, duration)
                else:
                    await self._fault(kind, duration)

    async def _fault(self, kind: str, duration: float) -> None:
        rng, net, run = self.rng, self.net, self.run_
        n = self.config.nodes
        timed = not self.config.overlap and duration > DETECTION
        if kind == "partition":
            order = rng.sample(range(n), n)
            cut = rng.randint(1, n - 1)
            side_a = [self.addrs[i] for i in order[:cut]]
            side_b = [self.addrs[i] for i in order[cut:]]
            run.note(f"partition {side_a} | {side_b} for {duration:.2f} s")
            if timed:
                for i in order[:cut]:
                    for j in order[cut:]:
                        self._offline_due(i, j, DETECTION, "partition")
                        self._offline_due(j, i, DETECTION, "partition")
            net.partition(side_a, side_b)
            await trio.sleep(duration)
            run.note(f"heal {side_a} | {side_b}")
            net.heal(side_a, side_b)
        elif kind == "freeze":
            i = rng.randrange(n)
            run.note(f"freeze n{i} for {duration:.2f} s")
            if timed:
                for j in range(n):
                    if j != i:
                        self._offline_due(i, j, DETECTION, "freeze")
                        self._offline_due(j, i, DETECTION, "freeze")
            net.freeze(self.addrs[i])
            await trio.sleep(duration)
            run.note(f"thaw n{i}")
            net.thaw(self.addrs[i])
        else:
            i = rng.randrange(n)
            inc = self.alive[i]
            if inc is None:
                return  # down already (overlapping faults)
            run.note(f"crash {inc.label}")
            inc.crashed = True
            inc.leaving_at = trio.current_time()
            inc.guard.deadline = inc.leaving_at + SHUTDOWN_LIMIT
            run.crashed.add(inc.label)
            if not self.config.overlap:
                for j in range(n):
                    if j != i:
                        self._offline_due(j, i, CRASH_NOTICED, "crash")
            self.alive[i] = None
            net.crash(inc.node)
            await trio.sleep(rng.uniform(0.2, 2 * PEER_TIMEOUT))
            await inc.gone.wait()
            await self._start(i)
            with trio.move_on_after(2 * LIMITS.connect_timeout):
                await self._peer_all(i)

    def _offline_due(self, i: int, j: int, within: float, why: str) -> None:
        """If ``i`` is connected to ``j`` now, it must see ``j`` go Offline soon."""
        observer = self.alive[i]
        if observer is not None and self.locations[j] in observer.node.peers():
            now = trio.current_time()
            self.run_.offline_due.append((observer.label, f"n{j}", now, now + within, why))

    async def _links_driver(self, scope: trio.CancelScope) -> None:
        rng = self._rng("links")
        n = self.config.nodes
        with scope:
            while True:
                await trio.sleep(rng.uniform(1.0, 8.0))
                self._change_link(rng, *rng.sample(range(n), 2))

    def _change_link(self, rng: random.Random, i: int, j: int) -> None:
        latency = rng.choice([0.0, 0.002, rng.uniform(0.0, 0.3)])
        jitter = rng.choice([0.0, rng.uniform(0.0, 0.2)])
        bandwidth = rng.choice([None, None, rng.uniform(5_000, 200_000)])
        loss = rng.choice([0.0, rng.uniform(0.0, 0.5)])  # datagrams only: streams ignore it
        self.run_.note(
            f"link n{i} <-> n{j}: latency {latency:.3f} jitter {jitter:.3f} "
            f"bandwidth {bandwidth} loss {loss:.2f}"
        )
        self.net.set_link(
            self.addrs[i],
            self.addrs[j],
            latency=latency,
            jitter=jitter,
            bandwidth=bandwidth,
            loss=loss,
        )

    async def _peer_all(self, i: int) -> None:
        inc = self.alive[i]
        if inc is None:
            return
        for j, other in enumerate(self.alive):
            if j != i and other is not None:
                code = await inc.node.peer(self.locations[j])
                self.run_.note(f"{inc.label} peer n{j}: {code}")

    # -- the nodes' tasks ------------------------------------------------------------------

    async def _peer_log(self, task: Task, inc: Incarnation) -> None:
        task.set_daemon()
        while True:
            status: PeerStatus = await task.receive()
            now = trio.current_time()
            self.run_.peer_events.append((now, inc.label, status.name, status.status.name))
            self.run_.note(f"{inc.label} sees {status.name} {status.status.name}")

    async def _receiver(self, task: Task, inc: Incarnation) -> None:
        task.set_daemon()
        me = f"{inc.label}/rx"
        self.labels[task] = me
        task.register("rx")
        received, run = self.run_.received, self.run_
        while True:
            _, sender, seq, meant_for = await task.receive()
            received.setdefault((sender, me), []).append(seq)
            if meant_for != me:
                run.misdelivered.append((sender, seq, meant_for, me))

    async def _sender(self, task: Task, inc: Incarnation) -> None:
        task.set_daemon()
        me = f"{inc.label}/tx"
        rng = self._rng(me)
        refs: dict[int, Task] = {}
        seqs = [0] * self.config.nodes
        others = [j for j in range(self.config.nodes) if j != inc.index]
        while True:
            await trio.sleep(rng.expovariate(4.0))
            if not self.sending:
                return
            j = rng.choice(others)
            ref = refs.get(j)
            if ref is None:
                ref = await Task.locate("rx", self.locations[j], timeout=2)
                if ref is None:
                    continue
                refs[j] = ref
            receiver = self.labels.get(ref, "?")
            if rng.random() < 0.5:
                for _ in range(rng.randint(1, 6)):  # a burst: no checkpoint in between
                    seqs[j] += 1
                    if ref.send(("m", me, seqs[j], receiver)) < 0:
                        del refs[j]
                        break
            else:
                seqs[j] += 1
                seq = seqs[j]
                message = ("m", me, seq, receiver)
                if await ref.deliver(message, timeout=rng.uniform(0.5, 3.0)) == 1:
                    self.run_.delivered.setdefault((me, receiver), set()).add(seq)
                elif rng.random() < 0.5:
                    refs.pop(j, None)  # perhaps stale: locate it again

    async def _spawner(self, task: Task, inc: Incarnation) -> None:
        task.set_daemon()
        rng = self._rng(f"{inc.label}/spawner")
        k = 0
        while self.spawning:
            alive = [w for w in inc.workers if w.task is not None and w.task.is_alive()]
            if len(alive) < 4:
                k += 1
                worker = Worker(
                    name=f"w{inc.label}.{k}",
                    label=f"{inc.label}/w{k}",
                    index=inc.index,
                    location=inc.node.location,
                )
                life = rng.uniform(3.0, 50.0)
                fate = rng.choice(["return", "return", "raise"])
                worker.task = inc.node.spawn(self._worker, worker, life, fate)
                inc.workers.append(worker)
                self.published.append(worker)
            await trio.sleep(rng.uniform(1.0, 6.0))

    async def _worker(self, task: Task, worker: Worker, life: float, fate: str) -> str:
        task.set_daemon()
        self.labels[task] = worker.label
        task.register(worker.name)
        try:
            order = await task.receive(timeout=life)
            if order is None and fate == "raise":
                raise ValueError(f"{worker.label} fails on purpose")
            return "done"
        finally:
            self.run_.ended[worker.label] = trio.current_time()

    async def _watcher(self, task: Task, inc: Incarnation) -> None:
        task.set_daemon()
        me = f"{inc.label}/watcher"
        rng = self._rng(me)
        run = self.run_
        monitored: set[str] = set()  # never twice the same worker: one status each
        while True:
            until = trio.current_time() + rng.uniform(0.5, 4.0)
            while (left := until - trio.current_time()) > 0:
                status = await task.receive(timeout=left)
                if isinstance(status, MonitorStatus):
                    self._record_status(me, status)
            if not self.monitoring:
                continue
            candidates = [
                w for w in self.published if w.index != inc.index and w.label not in monitored
            ]
            if not candidates:
                continue
            chosen = rng.choice(candidates[-12:])  # mostly recent ones, mostly alive
            ref = await Task.locate(chosen.name, chosen.location, timeout=2)
            if ref is None:
                continue
            monitored.add(chosen.label)
            if await task.monitor(ref) == 0:
                run.watches.setdefault((me, chosen.label), trio.current_time())
                if rng.random() < 0.15:
                    ref.terminate()

    def _record_status(self, watcher: str, status: MonitorStatus) -> None:
        info, kind = status.info, status.type
        worker = self.labels.get(info, "?") if isinstance(info, Task) else "?"
        name = "PeerLost" if kind is PeerLost else getattr(kind, "__name__", repr(kind))
        self.run_.statuses.setdefault((watcher, worker), []).append((trio.current_time(), name))
