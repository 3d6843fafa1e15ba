"""Memory: what idle tasks and connected peers cost, triopycos against pycos 4.12.2.

Run: ``python bench/memory.py [--tasks N] [--peers K] [--rounds R]``

Two measurements, each in fresh processes for each system (resident set size, from
``/proc/self/statm``, after a ``gc.collect()``):

* idle tasks: one process starts a node (triopycos: ``open_pycos`` on 127.0.0.1
  without discovery; pycos: its scheduler), notes its RSS, then starts N tasks (in
  waves of 1000) that each wait, waits until all of them are waiting, and notes its
  RSS again: bytes per task = the difference / N.  Two kinds of waiting, each in a
  process of its own: *parked in receive* (``receive()``, never having received
  anything) and *idle* (``suspend()`` with no timeout, pycos's ``yield
  task.suspend()``).  The floor, ``raw``, is bare trio in the same run: tasks started
  with ``nursery.start_soon``, all parked on the receive of one memory channel (the
  cost of a parked trio task itself), or in ``trio.sleep_forever()``; and, to show
  what a mailbox and a cancel scope cost in trio, tasks each parked on a memory
  channel of their own (the mailbox a task would need), and tasks each in a
  ``CancelScope`` of their own (what ``terminate()`` needs) parked on the shared
  channel.
* per connected peer: a *hub* process starts a node, then starts client processes
  one after the other, each a node of the same system that peers with the hub over
  loopback and then stays idle.  The hub notes its RSS when the first client is its
  peer (so the one-time cost of a first connection, lazy imports and so on, is not
  counted) and again when K more are: bytes per peer = the difference / K.  pycos
  peers with its default ``stream_send=False``, so a pycos peer is bookkeeping only
  (pycos opens a connection per message); a triopycos peer is a live connection with
  its reader, writer and heartbeat tasks.

RSS counts what the process touched, including what the allocator keeps for reuse,
so these are the costs a user sees, not a sum of object sizes.
"""

from __future__ import annotations

import argparse
import gc
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    Metric,
    WorkerError,
    arm_watchdog,
    emit_json,
    format_table,
    format_value,
    load_average,
    median,
    ratio,
    rss_bytes,
    run_worker,
    start_server,
    stop_process,
    version,
)

SECRET = "bench-memory"
SYSTEMS = ("triopycos", "pycos")
#: Systems of the idle-task measurements: ``raw`` is bare trio (no peers).
IDLE_SYSTEMS = ("triopycos", "pycos", "raw")
#: How the idle tasks wait: "receive" (parked in receive), "suspend" (idle), and, for
#: bare trio only, "own" (parked on a memory channel of its own) and "scoped" (in a
#: cancel scope of its own, parked on the shared channel).
MODES = ("receive", "suspend", "own", "scoped")
WAVE = 1000
#: Hard limit on each worker process, seconds.
DEADLINE = 240.0
#: How long the hub waits for its clients to become peers.
PEER_WAIT = 60.0

METRICS = (
    Metric("idle_task", "RSS per task parked in receive", "bytes", False),
    Metric("idle_total", "RSS of the tasks parked in receive", "MB", False, 1e-6),
    Metric("suspended_task", "RSS per idle task (suspend)", "bytes", False),
    Metric("peer", "RSS per connected peer", "KiB", False, 1 / 1024),
)
#: Bare trio only: a task parked on a memory channel of its own; one in a cancel scope
#: of its own, parked on the shared channel.
RAW_METRICS = (
    Metric("own_channel_task", "bare trio: task parked on its own channel", "bytes", False),
    Metric("scoped_task", "bare trio: task in its own cancel scope, parked", "bytes", False),
)
#: The metric key of each mode.
MODE_KEYS = {
    "receive": "idle_task",
    "suspend": "suspended_task",
    "own": "own_channel_task",
    "scoped": "scoped_task",
}


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()


# -- idle tasks -------------------------------------------------------------------------


def _result(mode: str, count: int, grown: int) -> dict[str, float]:
    out = {MODE_KEYS[mode]: grown / count}
    if mode == "receive":
        out["idle_total"] = float(grown)
    return out


class _Waves:
    """Starts tasks in a trio run in waves of ``WAVE``, each wave awaited until all
    its tasks are waiting (each calls ``arrived()`` just before it waits), and says
    how much the RSS grew for all of them."""

    def __init__(self) -> None:
        import trio

        self._started = 0
        self._wave_end = 0
        self._wave_started = trio.Event()

    def arrived(self) -> None:
        self._started += 1
        if self._started == self._wave_end:
            self._wave_started.set()

    async def grown(self, count: int, start_one: Callable[[], object]) -> int:
        import trio

        await trio.sleep(0.05)
        before = _settled_rss()
        spawned = 0
        while spawned < count:
            wave = min(WAVE, count - spawned)
            self._wave_started, self._wave_end = trio.Event(), spawned + wave
            for _ in range(wave):
                start_one()
            spawned += wave
            await self._wave_started.wait()  # every task of the wave is waiting
        return _settled_rss() - before


def triopycos_idle(count: int, mode: str) -> dict[str, float]:
    import trio

    from triopycos import Task, open_pycos

    waves = _Waves()
    suspend = mode == "suspend"

    async def idle(task: Task) -> None:
        waves.arrived()
        if suspend:
            await task.suspend()
        else:
            await task.receive()

    async def main() -> dict[str, float]:
        async with open_pycos(
            name="bench-memory", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            grown = await waves.grown(count, lambda: node.spawn(idle))
            node.terminate()
        return _result(mode, count, grown)

    return trio.run(main)


def pycos_idle(count: int, mode: str) -> dict[str, float]:
    import pycos

    pycos.logger.setLevel(pycos.Logger.CRITICAL)
    pycos.logger.stream = sys.stderr
    scheduler = pycos.Pycos.instance()
    started = [0]
    suspend = mode == "suspend"

    def idle(task: Any = None) -> Generator[Any, Any, None]:
        started[0] += 1
        if suspend:
            yield task.suspend()
        else:
            yield task.receive()

    try:
        time.sleep(0.05)
        before = _settled_rss()
        spawned = 0
        while spawned < count:
            wave = min(WAVE, count - spawned)
            for _ in range(wave):
                pycos.Task(idle)
            spawned += wave
            while started[0] < spawned:  # the scheduler thread runs them
                time.sleep(0.001)
        grown = _settled_rss() - before
    finally:
        scheduler.terminate()
    return _result(mode, count, grown)


def raw_idle(count: int, mode: str) -> dict[str, float]:
    """Bare trio: ``count`` tasks parked on the receive of one memory channel
    (``mode="receive"``; in a cancel scope each with ``"scoped"``), of a memory
    channel each (``"own"``), or in ``trio.sleep_forever()`` (``"suspend"``)."""
    import trio

    waves = _Waves()
    # The send ends are kept, as a sender would keep them (they are part of a mailbox).
    senders: list[trio.MemorySendChannel[object]] = []

    async def parked(receiver: trio.MemoryReceiveChannel[object]) -> None:
        waves.arrived()
        await receiver.receive()

    async def scoped(receiver: trio.MemoryReceiveChannel[object]) -> None:
        with trio.CancelScope():
            waves.arrived()
            await receiver.receive()

    async def sleeping() -> None:
        waves.arrived()
        await trio.sleep_forever()

    async def main() -> dict[str, float]:
        shared_send, shared = trio.open_memory_channel[object](0)
        async with trio.open_nursery() as nursery:

            def start_one() -> None:
                if mode == "suspend":
                    nursery.start_soon(sleeping)
                elif mode == "own":
                    send, receive = trio.open_memory_channel[object](math.inf)
                    senders.append(send)
                    nursery.start_soon(parked, receive)
                else:
                    nursery.start_soon(scoped if mode == "scoped" else parked, shared)

            grown = await waves.grown(count, start_one)
            nursery.cancel_scope.cancel()
        shared_send.close()
        return _result(mode, count, grown)

    return trio.run(main)


# -- connected peers --------------------------------------------------------------------


def _client_argv(system: str, port: int) -> list[str]:
    return [str(Path(__file__).resolve()), "--peer-client", system, "--port", str(port)]


class _Clients:
    """The hub's client processes: started one by one, all stopped at the end."""

    def __init__(self, system: str, port: int) -> None:
        self.system = system
        self.port = port
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.procs.append(start_server(_client_argv(self.system, self.port)))

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)


def _wait_for(what: str, ready: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise RuntimeError(f"hub: {what} not reached within {timeout:.0f} s")
        time.sleep(0.01)


def triopycos_hub(peers: int) -> dict[str, float]:
    import trio

    from triopycos import PeerStatus, Task, open_pycos

    async def main() -> dict[str, float]:
        async with open_pycos(
            name="bench-memory-hub", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            clients = _Clients("triopycos", node.location.port)
            online = 0
            grown_to = trio.Event()
            target = 0

            async def watch(task: Task) -> None:
                nonlocal online
                while True:
                    status = await task.receive()
                    if isinstance(status, PeerStatus) and status.status == PeerStatus.Online:
                        online += 1
                        if online == target:
                            grown_to.set()

            watcher = node.spawn(watch)
            watcher.set_daemon()
            node.peer_status(watcher)
            try:

                async def grow_to(n: int) -> None:
                    nonlocal target, grown_to
                    target, grown_to = n, trio.Event()
                    with trio.fail_after(PEER_WAIT):
                        if online < n:
                            await grown_to.wait()
                    await trio.sleep(0.2)  # let the handshakes' leftovers go

                clients.start()
                await grow_to(1)
                first = _settled_rss()
                for _ in range(peers):
                    clients.start()
                await grow_to(1 + peers)
                grown = _settled_rss() - first
            finally:
                clients.close()
            node.terminate()
        return {"peer": grown / peers}

    return trio.run(main)


def pycos_hub(peers: int) -> dict[str, float]:
    scheduler = _pycos_scheduler("bench-memory-hub")
    clients = _Clients("pycos", int(scheduler.location.port))
    try:

        def grow_to(n: int) -> None:
            _wait_for(f"{n} peers", lambda: len(scheduler.peers()) >= n, PEER_WAIT)
            time.sleep(0.2)

        clients.start()
        grow_to(1)
        first = _settled_rss()
        for _ in range(peers):
            clients.start()
        grow_to(1 + peers)
        grown = _settled_rss() - first
    finally:
        clients.close()
        scheduler.terminate()
    return {"peer": grown / peers}


def _pycos_scheduler(name: str) -> Any:
    import pycos
    import pycos.netpycos

    pycos.logger.setLevel(pycos.Logger.CRITICAL)
    pycos.logger.stream = sys.stderr
    return pycos.netpycos.Pycos(
        host=HOST, tcp_port=0, udp_port=0, name=name, discover_peers=False, secret=SECRET
    )


def triopycos_peer_client(port: int) -> None:
    import trio

    from triopycos import Location, open_pycos

    async def main() -> None:
        async with open_pycos(
            name="bench-memory-client", node=HOST, tcp_port=0, discover_peers=False, secret=SECRET
        ) as node:
            if await node.peer(Location(HOST, port)) != 0:
                raise RuntimeError("triopycos client: peer() failed")
            await trio.sleep_forever()  # until the hub closes our stdin

    trio.run(main)


def pycos_peer_client(port: int) -> None:
    import pycos
    import pycos.netpycos

    scheduler = _pycos_scheduler("bench-memory-client")

    def peer(task: Any = None) -> Generator[Any, Any, int]:
        status: int = yield scheduler.peer(pycos.netpycos.Location(HOST, port))
        return status

    if pycos.Task(peer).value() != 0:
        raise RuntimeError("pycos client: peer() failed")
    time.sleep(DEADLINE)  # until the hub closes our stdin


# -- driver -----------------------------------------------------------------------------


def modes_of(system: str) -> tuple[str, ...]:
    return MODES if system == "raw" else MODES[:2]


def run_round(system: str, *, tasks: int, peers: int) -> dict[str, float]:
    """One round of one system (also what ``bench/run.py`` calls): an idle-tasks
    process per mode and (not bare trio) one hub process."""
    script = str(Path(__file__).resolve())
    result: dict[str, float] = {}
    for mode in modes_of(system):
        argv = [script, "--idle", system, "--mode", mode, "--tasks", str(tasks)]
        result.update(run_worker(argv, timeout=DEADLINE + 10))
    if system != "raw":
        argv = [script, "--hub", system, "--peers", str(peers)]
        result.update(run_worker(argv, timeout=DEADLINE + 10))
    return result


def table(value: Callable[[str, str], float]) -> str:
    """triopycos, pycos and bare trio side by side: ``value(system, key)`` is the
    median of a metric; "vs pycos" > 1: triopycos smaller; "x bare trio":
    triopycos's bytes over bare trio's."""
    headers = ["benchmark", "triopycos", "pycos", "bare trio", "vs pycos", "x bare trio"]
    rows: list[list[str]] = []
    for m in (*METRICS, *RAW_METRICS):
        ours, theirs, floor = (value(s, m.key) for s in IDLE_SYSTEMS)
        r, f = ratio(m, ours, theirs), ratio(m, ours, floor)
        rows.append(
            [
                f"{m.label} ({m.unit})",
                *(format_value(v * m.scale) for v in (ours, theirs, floor)),
                "n/a" if math.isnan(r) else f"{r:.2f}x",
                "n/a" if math.isnan(f) else f"{1 / f:.2f}",
            ]
        )
    return format_table(headers, rows)


def drive(args: argparse.Namespace) -> int:
    collected: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in IDLE_SYSTEMS}
    failed = 0
    for rnd in range(args.rounds):
        shift = rnd % len(IDLE_SYSTEMS)
        order = IDLE_SYSTEMS[shift:] + IDLE_SYSTEMS[:shift]
        for system in order:
            try:
                data = run_round(system, tasks=args.tasks, peers=args.peers)
            except (WorkerError, subprocess.SubprocessError) as exc:
                failed += 1
                print(f"round {rnd + 1}, {system}: FAILED: {exc}", file=sys.stderr)
                continue
            for key, v in data.items():
                collected[system][key].append(v)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    print(
        f"Memory: median of {args.rounds} round(s); {args.tasks:,} idle tasks; "
        f"{args.peers} peers (after a first one); pycos {version('pycos')}, "
        f"trio {version('trio')}; load average {load_average()}\n"
    )

    def value(system: str, key: str) -> float:
        return median(collected[system].get(key, []))

    print(table(value))
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="idle tasks (100,000)")
    parser.add_argument("--peers", type=int, default=12, help="peers after the first (12)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", choices=IDLE_SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="receive", help=argparse.SUPPRESS)
    parser.add_argument("--hub", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--peer-client", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.peers < 1 or args.rounds < 1:
        parser.error("--tasks, --peers and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.idle:
        arm_watchdog(DEADLINE)
        idle = {"triopycos": triopycos_idle, "pycos": pycos_idle, "raw": raw_idle}[args.idle]
        emit_json(idle(args.tasks, args.mode))
        return 0
    if args.hub:
        arm_watchdog(DEADLINE)
        hub = triopycos_hub if args.hub == "triopycos" else pycos_hub
        emit_json(hub(args.peers))
        return 0
    if args.peer_client:
        arm_watchdog(DEADLINE, exit_on_stdin_eof=True)
        client = triopycos_peer_client if args.peer_client == "triopycos" else pycos_peer_client
        client(args.port)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
