"""Remote messaging benchmarks: triopycos against pycos 4.12.2 and a raw trio floor.

Run: ``python bench/remote.py [--rounds N] [--quick]``

Every round, for each system (the order rotates between rounds), the driver starts
two fresh processes talking over loopback: a *server* (``--serve SYSTEM``) that runs
one registered task, and a *client* (``--client SYSTEM``) that peers with it, locates
that task and measures, inside its own task, with ``time.perf_counter``:

* one-way send, small / 4 KiB: after a ``deliver(("start", me))`` the client sends M
  messages (small: the int ``i``; 4 KiB: one ``bytes`` of 4096) with ``rtask.send``,
  yielding to the scheduler after every 1000 sends, then sends ``("end",)``.  The
  server counts the messages and, on "end", sends the count back to the client task.
  Rate = messages received / (first send -> count received).  A refused send (-1)
  or a message that never arrived is a failure.  Flow control: ``send`` never waits,
  and yielding alone does not stop a fast sender from filling the 64 MiB per-peer
  outbox with 4 KiB messages, so after every 4000 sends the client also sends
  ``("sync", k)``, which the server answers with ``("synced", k)``, and it waits for
  the answer to marker k-1 after sending marker k (at most 2 windows, 32 MiB, in
  flight; ``--window 0`` turns this off).  pycos gets exactly the same treatment.
* deliver round trip: ``await rtask.deliver(i)`` in a loop; time per call.
* send/receive ping-pong: the client sends ``(me, i)``, the server task sends ``i``
  back to ``me``; time per round trip.
* ``Task.locate`` at a location: ``await Task.locate(name, location, timeout)`` of the
  server's registered task, again and again (the node is already a peer); time per
  call.  A call that does not find it is a failure.
* RPS call to result: the server registers an RPS whose method returns ``x + 1`` at
  once; the client calls ``rtask = await rps(x)`` then ``await rtask.finish(timeout=
  RPS_WAIT)``; time per call, averaged over the calls that gave ``x + 1``.  A call
  whose result never came (finish gave None, also after the loop) is *lost*; the
  "RPS results lost" row gives their share of the calls.  pycos 4.12.2 loses a result
  whenever the task's MonitorStatus reaches the client before the call's reply (its
  ``RPS._monitor_proc`` then looks the task up under the wrong key for 1 s and gives
  up; about one call in four or five here).  The lost task stays in the reference's
  ``_rtasks`` table, and pycos task ids are memory addresses, which the server
  reuses: a later call whose task gets that id has its status taken by the stale
  entry, and loses its result too.  So pycos is given few calls: each loss costs
  RPS_WAIT.
* channel fan-out: the server registers a channel; the client starts FAN subscriber
  tasks (each subscribes to the remote channel), then publishes the ints ``0..M-1``
  with ``rchan.send``, yielding after every 1000 as above, then ``("end",)``.  Each
  subscriber counts, tells the publisher (a local message) after every 1000 and, on
  "end", sends its count and unsubscribes.  A message is delivered once every
  subscriber got it: rate = smallest count / (first send -> last final count).
  Flow control: the publisher stays at most ``window`` x 1000 messages ahead of the
  slowest subscriber.

Systems:

* ``triopycos``: ``async def`` tasks on ``open_pycos(node="127.0.0.1", tcp_port=0,
  discover_peers=False)`` nodes;
* ``pycos``: pycos 4.12.2 generator tasks on ``netpycos.Pycos(host="127.0.0.1",
  tcp_port=0, udp_port=0, discover_peers=False)`` schedulers, peered with pycos's
  default ``stream_send=False`` (``--pycos-stream`` adds a column with
  ``stream_send=True`` on both sides);
* ``raw``: the floor, plain trio TCP with 4-byte length-prefixed frames and no codec,
  no tasks: the one-way test writes 1000 frames per ``send_all`` (what triopycos's
  writer does when the sender yields every 1000 sends), the round-trip tests
  (deliver, ping-pong, locate) send a frame and wait for its echo.

Each system gets its own message counts (pycos is about 50x slower, so it gets fewer
messages), each measured loop is also bounded in time, and every benchmark runs once
as a warm-up (1/20 of the size) first.  Only loopback is used: every node binds
127.0.0.1 and nothing discovers peers.  Every process gets a hard deadline
(a watchdog in the process, a timeout in the driver, and the driver kills the server
when the client is done or fails).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    Metric,
    TlsFiles,
    WorkerError,
    announce_ready,
    arm_watchdog,
    clock,
    emit_json,
    format_table,
    format_value,
    load_average,
    median,
    quiet_gc,
    ratio,
    raw_tls_contexts,
    run_with_server,
    version,
)

if TYPE_CHECKING:
    import trio

    from triopycos import RPS as TrioRPS
    from triopycos import Channel as TrioChannel
    from triopycos import Location
    from triopycos import Pycos as TrioPycos
    from triopycos import Task as TrioTask

SECRET = "bench-remote"
SERVER_NAME = "bench_server"
#: Name of the RPS (``x -> x + 1``) and of the channel the servers register.
RPS_NAME = "bench_inc"
FAN_NAME = "bench_fan"
#: Subscribers of the fan-out channel (tasks in the client process).
FAN = 3
BIG = b"\xa5" * 4096
#: The sender yields to its scheduler after this many sends.
BATCH = 1000
#: One-way flow control window, in batches (see ``Sizes.window``): 4 x 1000 x 4 KiB =
#: 16 MiB, so at most 32 MiB is ever in flight, half the 64 MiB per-peer outbox.
WINDOW = 4
#: Timeout of each single deliver / ping-pong reply, and of control messages.
OP_TIMEOUT = 10.0
#: How long the RPS benchmark waits for one call's result.  Longer than the 1 s pycos's
#: RPS monitor task (``RPS._monitor_proc``) spends looking for a task whose status came
#: before the call's reply: a result is counted as lost only if it never comes, and a
#: loss never delays the next call's result.
RPS_WAIT = 1.25

SYSTEMS = ("triopycos", "pycos", "raw")
OPTIONAL_SYSTEMS = ("pycos-stream",)

METRICS: tuple[Metric, ...] = (
    Metric("send_small", "one-way send, small int", "msg/s", True),
    Metric("send_4k", "one-way send, 4 KiB bytes", "msg/s", True),
    Metric("deliver", "deliver round trip", "µs", False, 1e6),
    Metric("ping_pong", "send/receive ping-pong", "µs", False, 1e6),
    Metric("locate", "Task.locate at a location", "µs", False, 1e6),
    Metric("rps", "RPS call to result", "µs", False, 1e6),
    Metric("rps_lost", "RPS results lost", "% of calls", False),
    Metric("fan_out", f"channel fan-out to {FAN} subscribers", "msg/s", True),
)

COLUMN_NAMES = {
    "triopycos": "triopycos",
    "pycos": "pycos",
    "pycos-stream": "pycos stream_send",
    "raw": "raw trio",
}


@dataclass(frozen=True)
class Sizes:
    """Messages (one-way, fan-out) or round trips (deliver, ping-pong, RPS calls) per
    measured loop."""

    small: int
    big: int
    deliver: int
    ping_pong: int
    locate: int
    rps: int
    fan: int
    #: Each measured loop stops after this many seconds, whatever its count.
    cap: float
    #: One-way flow control: a ("sync", k) marker after every ``window`` batches of
    #: BATCH sends, and at most two markers unanswered; fan-out: the publisher at most
    #: ``window`` batches ahead of the slowest subscriber (0: no flow control).
    window: int = WINDOW
    #: The RPS loop's own time limit, if not ``cap``: a lost pycos result costs
    #: RPS_WAIT, so ``cap`` would leave pycos only a handful of calls.
    rps_cap: float | None = None

    @property
    def rps_time(self) -> float:
        return self.cap if self.rps_cap is None else self.rps_cap

    def warmup(self) -> Sizes:
        return replace(
            self,
            small=max(1, self.small // 20),
            big=max(1, self.big // 20),
            deliver=max(1, self.deliver // 20),
            ping_pong=max(1, self.ping_pong // 20),
            locate=max(1, self.locate // 20),
            rps=max(1, self.rps // 20),
            fan=max(1, self.fan // 20),
        )


# pycos gets few RPS calls: a fifth to a half of its results are lost (see the module
# docstring) and each loss costs RPS_WAIT, so its RPS loop
# mostly ends on its time limit (with --quick, longer than `cap`, or it would make only
# a handful of calls).  The raw floor has no RPS or channel (its rps / fan are unused).
_PYCOS = Sizes(
    small=10_000, big=5_000, deliver=1_500, ping_pong=1_500, locate=1_500, rps=60, fan=3_000, cap=8
)
_PYCOS_QUICK = Sizes(
    small=2_000, big=1_000, deliver=300, ping_pong=300, locate=300, rps=30, fan=600, cap=1.5,
    rps_cap=5.0,
)  # fmt: skip
DEFAULT_SIZES: dict[str, Sizes] = {
    "triopycos": Sizes(
        small=300_000, big=60_000, deliver=5_000, ping_pong=5_000, locate=5_000, rps=5_000,
        fan=60_000, cap=8.0,
    ),
    "pycos": _PYCOS,
    "pycos-stream": _PYCOS,
    "raw": Sizes(
        small=600_000, big=120_000, deliver=10_000, ping_pong=10_000, locate=10_000, rps=0,
        fan=0, cap=8.0,
    ),
}  # fmt: skip
QUICK_SIZES: dict[str, Sizes] = {
    "triopycos": Sizes(
        small=50_000, big=10_000, deliver=1_000, ping_pong=1_000, locate=1_000, rps=1_000,
        fan=10_000, cap=1.5,
    ),
    "pycos": _PYCOS_QUICK,
    "pycos-stream": _PYCOS_QUICK,
    "raw": Sizes(
        small=100_000, big=20_000, deliver=2_000, ping_pong=2_000, locate=2_000, rps=0, fan=0,
        cap=1.5,
    ),
}  # fmt: skip


def sizes_for(system: str, quick: bool, window: int = WINDOW) -> Sizes:
    return replace((QUICK_SIZES if quick else DEFAULT_SIZES)[system], window=window)


# -- result bookkeeping -------------------------------------------------------------
#
# A run of one benchmark gives (value in base units, failures).  The worker's JSON has
# "<key>" and "<key>.failed" for each.


@dataclass
class Outcome:
    value: float
    failed: int
    detail: str = ""


def one_way_outcome(sent: int, refused: int, reply: object, elapsed: float) -> Outcome:
    """Outcome of a one-way run from what the sender saw and the server's count."""
    if not (isinstance(reply, (tuple, list)) and len(reply) == 2 and reply[0] == "count"):
        return Outcome(math.nan, sent, f"no count from the server (got {reply!r})")
    received = int(reply[1])
    lost = max(0, sent - refused - received)
    detail = f"{refused} refused, {lost} lost" if refused or lost else ""
    value = received / elapsed if elapsed > 0 and received > 0 else math.nan
    return Outcome(value, refused + lost, detail)


def per_op_outcome(done: int, failed: int, elapsed: float) -> Outcome:
    return Outcome(elapsed / done if done else math.nan, failed)


@dataclass
class RpsTally:
    """What an RPS loop saw: every call, and the time of those that gave the result."""

    calls: int = 0
    ok: int = 0
    ok_time: float = 0.0
    #: Calls whose finish gave a wrong value (e.g. a failure status), not None.
    wrong: int = 0
    #: Calls with no result within RPS_WAIT whose result came by the end of the loop.
    late: int = 0

    def outcomes(self) -> dict[str, Outcome]:
        """ "rps": mean call-to-result time of the calls that gave their result (the
        others are failures); "rps_lost": % of calls whose result never came."""
        failed = self.calls - self.ok
        lost = failed - self.wrong - self.late
        detail = (
            f"{failed} of {self.calls} calls without their result "
            f"({lost} lost, {self.late} late, {self.wrong} wrong)"
            if failed
            else ""
        )
        return {
            "rps": Outcome(self.ok_time / self.ok if self.ok else math.nan, failed, detail),
            "rps_lost": Outcome(100.0 * lost / self.calls if self.calls else math.nan, 0),
        }


def fan_outcome(sent: int, refused: int, counts: Sequence[int | None], elapsed: float) -> Outcome:
    """Fan-out outcome from the subscribers' final counts: a message is delivered once
    every subscriber got it, so the rate is the smallest count over the elapsed time."""
    if any(c is None for c in counts):
        return Outcome(math.nan, sent, f"subscriber counts: {list(counts)!r}")
    delivered = min(c for c in counts if c is not None)
    lost = max(0, sent - refused - delivered)
    detail = f"{refused} refused, {lost} lost (counts {list(counts)})" if refused or lost else ""
    value = delivered / elapsed if elapsed > 0 and delivered > 0 else math.nan
    return Outcome(value, refused + lost, detail)


def fan_note(msg: object, acked: list[int], counts: list[int | None]) -> bool:
    """The fan-out publisher's bookkeeping of a subscriber's ``("ack", k, count)`` (it
    got ``count`` messages) or ``("done", k, count)`` (its final count); False for
    anything else (a receive timeout gives None)."""
    if not (type(msg) is tuple and len(msg) == 3 and msg[1] in range(FAN)):
        return False
    kind, k, count = msg
    if kind == "ack":
        acked[k] = max(acked[k], count)
    elif kind == "done":
        acked[k] = max(acked[k], count)
        counts[k] = count
    else:
        return False
    return True


# -- server task bodies -------------------------------------------------------------
#
# Besides its task, each server registers an RPS named RPS_NAME (x -> x + 1, a task
# that ends at once) and a channel named FAN_NAME.
#
# Messages the server task understands:
#   ("start", client)  reset the count, remember whom to answer
#   ("end",)           send ("count", n) to the client
#   ("quit",)          end the task (the server process then exits)
#   (task, x)          send x to task (ping-pong)
#   anything else      count it


def gen_server(task: Any = None) -> Generator[Any, Any, int]:
    """pycos server task (generator)."""
    task.register(SERVER_NAME)
    count = 0
    client: Any = None
    while True:
        msg = yield task.receive()
        if type(msg) is tuple:
            head = msg[0]
            if not isinstance(head, str):
                head.send(msg[1])
            elif head == "start":
                count, client = 0, msg[1]
            elif head == "sync":
                if client is not None:
                    client.send(("synced", msg[1]))
            elif head == "end":
                if client is not None:
                    client.send(("count", count))
            elif head == "quit":
                return count
        else:
            count += 1


def gen_stream_server(scheduler: Any, task: Any = None) -> Generator[Any, Any, int]:
    """pycos server task that, on "start", switches its connection to the client's
    node to stream mode (pycos's ``stream_send=True``) before serving as usual."""
    task.register(SERVER_NAME)
    count = 0
    client: Any = None
    while True:
        msg = yield task.receive()
        if type(msg) is tuple:
            head = msg[0]
            if not isinstance(head, str):
                head.send(msg[1])
            elif head == "start":
                count, client = 0, msg[1]
                # An existing peer: pycos only flips its flag, no network traffic.
                yield scheduler.peer(client.location, stream_send=True)
            elif head == "sync":
                if client is not None:
                    client.send(("synced", msg[1]))
            elif head == "end":
                if client is not None:
                    client.send(("count", count))
            elif head == "quit":
                return count
        else:
            count += 1


def gen_inc(x: int, task: Any = None) -> Generator[Any, Any, int]:
    """pycos RPS method: ends at once (pycos wants a generator function)."""
    if task is None:  # never (pycos passes the task); the yield makes a generator function
        yield None
    return x + 1


async def async_inc(x: int) -> int:
    """triopycos RPS method."""
    return x + 1


async def async_server(task: TrioTask) -> int:
    """triopycos server task."""
    task.register(SERVER_NAME)
    count = 0
    client: TrioTask | None = None
    receive = task.receive
    while True:
        msg = await receive()
        if type(msg) is tuple:
            head = msg[0]
            if not isinstance(head, str):
                head.send(msg[1])
            elif head == "start":
                count, client = 0, msg[1]
            elif head == "sync":
                if client is not None:
                    client.send(("synced", msg[1]))
            elif head == "end":
                if client is not None:
                    client.send(("count", count))
            elif head == "quit":
                return count
        else:
            count += 1


# -- pycos client (generator tasks, run by pycos's scheduler thread) ----------------


def gen_one_way(
    rtask: Any, n: int, big: bool, sz: Sizes, task: Any = None
) -> Generator[Any, Any, Outcome]:
    if (yield rtask.deliver(("start", task), timeout=OP_TIMEOUT)) != 1:
        return Outcome(math.nan, n, "server did not take 'start'")
    send = rtask.send
    refused = sent = batches = marker = 0
    unacked: list[int] = []
    start = clock()
    stop_at = start + sz.cap
    while sent < n:
        upto = min(n, sent + BATCH)
        for i in range(sent, upto):
            if send(BIG if big else i) != 0:
                refused += 1
        sent = upto
        yield  # let pycos's peer task send
        batches += 1
        if sz.window and batches % sz.window == 0:
            if send(("sync", marker)) == 0:
                unacked.append(marker)
            marker += 1
            if len(unacked) > 1:
                ack = yield task.receive(timeout=OP_TIMEOUT)
                if ack != ("synced", unacked.pop(0)):
                    return Outcome(math.nan, sent, f"flow control: got {ack!r}")
        if clock() > stop_at:
            break
    send(("end",))
    reply: Any = None
    for _ in range(len(unacked) + 1):
        reply = yield task.receive(timeout=sz.cap + 30.0)
        if not (type(reply) is tuple and reply[0] == "synced"):
            break
    return one_way_outcome(sent, refused, reply, clock() - start)


def gen_deliver(rtask: Any, n: int, cap: float) -> Generator[Any, Any, Outcome]:
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        try:
            ok = (yield rtask.deliver(done, timeout=OP_TIMEOUT)) == 1
        except (TimeoutError, OSError):  # pycos with TLS raises these at times
            ok = False
        if not ok:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


def gen_ping_pong(rtask: Any, n: int, cap: float, task: Any = None) -> Generator[Any, Any, Outcome]:
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        rtask.send((task, done))
        if (yield task.receive(timeout=OP_TIMEOUT)) != done:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


def gen_locate(loc: Any, n: int, cap: float) -> Generator[Any, Any, Outcome]:
    import pycos

    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        if (yield pycos.Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT)) is None:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


def gen_rps(rps: Any, n: int, cap: float) -> Generator[Any, Any, dict[str, Outcome]]:
    tally = RpsTally()
    missing: list[tuple[Any, int]] = []
    stop_at = clock() + cap
    while tally.calls < n:
        x = tally.calls
        start = clock()
        rtask = yield rps(x)
        value = None if rtask is None else (yield rtask.finish(timeout=RPS_WAIT))
        elapsed = clock() - start
        tally.calls += 1
        if value == x + 1:
            tally.ok += 1
            tally.ok_time += elapsed
        elif value is not None:
            tally.wrong += 1
        elif rtask is not None:
            missing.append((rtask, x))
        if clock() > stop_at:
            break
    for rtask, x in missing:  # a result that came after RPS_WAIT is late, not lost
        if (yield rtask.finish(timeout=0)) == x + 1:
            tally.late += 1
    rps.close()
    return tally.outcomes()


def gen_fan_subscriber(
    rchan: Any, k: int, publisher: Any, wait: float, task: Any = None
) -> Generator[Any, Any, int]:
    """Subscriber ``k``: counts the messages, acknowledges every BATCH of them to the
    publisher and, on ("end",), sends its count and unsubscribes."""
    if (yield rchan.subscribe(task, timeout=OP_TIMEOUT)) != 0:
        publisher.send(("failed", k))
        return -1
    publisher.send(("ready", k))
    count = 0
    while True:
        msg = yield task.receive(timeout=wait)
        if type(msg) is not int:
            break  # ("end",), or None: nothing came for `wait` seconds
        count += 1
        if count % BATCH == 0:
            publisher.send(("ack", k, count))
    publisher.send(("done", k, count))
    yield rchan.unsubscribe(task, timeout=OP_TIMEOUT)
    return count


def gen_fan_out(rchan: Any, n: int, sz: Sizes, task: Any = None) -> Generator[Any, Any, Outcome]:
    import pycos

    wait = sz.cap + 30.0
    subs = [pycos.Task(gen_fan_subscriber, rchan, k, task, wait) for k in range(FAN)]
    for _ in range(FAN):
        msg = yield task.receive(timeout=OP_TIMEOUT)
        if not (type(msg) is tuple and msg[0] == "ready"):
            for sub in subs:
                sub.terminate()
            return Outcome(math.nan, n, f"subscribing failed: {msg!r}")
    send = rchan.send
    acked = [0] * FAN
    counts: list[int | None] = [None] * FAN
    limit = sz.window * BATCH
    refused = sent = 0
    start = clock()
    stop_at = start + sz.cap
    while sent < n:
        upto = min(n, sent + BATCH)
        for i in range(sent, upto):
            if send(i) != 0:
                refused += 1
        sent = upto
        yield  # let pycos's peer task send
        stalled = False
        while limit and sent - min(acked) > limit and not stalled:  # flow control
            stalled = not fan_note((yield task.receive(timeout=OP_TIMEOUT)), acked, counts)
        if stalled or clock() > stop_at:
            break
    send(("end",))
    while None in counts:
        if not fan_note((yield task.receive(timeout=wait)), acked, counts):
            break
    elapsed = clock() - start
    for sub in subs:
        yield sub.finish(timeout=OP_TIMEOUT)  # unsubscribed: the next run starts afresh
    return fan_outcome(sent, refused, counts, elapsed)


def gen_client(
    scheduler: Any, port: int, sizes: Sizes, stream: bool, task: Any = None
) -> Generator[Any, Any, dict[str, Outcome]]:
    import pycos.netpycos

    loc = pycos.netpycos.Location(HOST, port)
    if (yield scheduler.peer(loc, stream_send=stream)) != 0:
        raise RuntimeError(f"pycos: peer({loc}) failed")
    rtask = yield pycos.Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT)
    if rtask is None:
        raise RuntimeError(f"pycos: {SERVER_NAME!r} not found at {loc}")
    rchan = yield pycos.Channel.locate(FAN_NAME, loc, timeout=OP_TIMEOUT)
    if rchan is None:
        raise RuntimeError(f"pycos: channel {FAN_NAME!r} not found at {loc}")
    results: dict[str, Outcome] = {}
    for sz in (sizes.warmup(), sizes):
        with quiet_gc():
            results["send_small"] = yield gen_one_way(rtask, sz.small, False, sz, task=task)
        with quiet_gc():
            results["send_4k"] = yield gen_one_way(rtask, sz.big, True, sz, task=task)
        with quiet_gc():
            results["deliver"] = yield gen_deliver(rtask, sz.deliver, sz.cap)
        with quiet_gc():
            results["ping_pong"] = yield gen_ping_pong(rtask, sz.ping_pong, sz.cap, task=task)
        with quiet_gc():
            results["locate"] = yield gen_locate(loc, sz.locate, sz.cap)
        # A fresh RPS reference per run: its close() ends its bookkeeping task.
        rps = yield pycos.RPS.locate(RPS_NAME, loc, timeout=OP_TIMEOUT)
        if rps is None:
            raise RuntimeError(f"pycos: RPS {RPS_NAME!r} not found at {loc}")
        with quiet_gc():
            results.update((yield gen_rps(rps, sz.rps, sz.rps_time)))
        with quiet_gc():
            results["fan_out"] = yield gen_fan_out(rchan, sz.fan, sz, task=task)
    yield rtask.deliver(("quit",), timeout=OP_TIMEOUT)
    return results


def _pycos_scheduler(name: str, tls: TlsFiles | None = None) -> Any:
    """A netpycos scheduler on loopback only, with no peer discovery (see the notes
    on UDP in ``pycos_serve``); with ``tls``, its connections are TLS (pycos's
    ``certfile``/``keyfile``: it trusts the certificates of its own ``certfile``)."""
    import pycos
    import pycos.netpycos

    pycos.logger.setLevel(pycos.Logger.CRITICAL)
    pycos.logger.stream = sys.stderr  # stdout is for the ready line / JSON
    return pycos.Pycos(
        host=HOST,
        tcp_port=0,
        udp_port=0,
        name=name,
        discover_peers=False,
        secret=SECRET,
        certfile=tls.cert_and_ca if tls else None,
        keyfile=tls.key if tls else None,
    )


def pycos_client(port: int, sizes: Sizes, stream: bool) -> dict[str, Outcome]:
    import pycos

    scheduler = _pycos_scheduler("bench-remote-client")
    try:
        value = pycos.Task(gen_client, scheduler, port, sizes, stream).value()
    finally:
        scheduler.terminate()
    if not isinstance(value, dict):
        raise RuntimeError(f"pycos client task failed: {value!r}")
    return value


def pycos_serve(deadline: float, stream: bool, tls: TlsFiles | None = None) -> None:
    """pycos server process.

    UDP (checked in pycos 4.12.2's netpycos.py): with ``host="127.0.0.1"`` pycos
    binds TCP to 127.0.0.1 and, without the optional netifaces module, its UDP
    socket to ``("<broadcast>", udp_port)``, i.e. 255.255.255.255 (receive only;
    ``udp_port=0`` picks a free port instead of the shared 9705).  It *sends* UDP
    only from ``discover_peers()`` (called by the constructor when
    ``discover_peers=True``), from ``peer()`` given a location with port 0, and when
    relaying a peer's ``relay=True`` ping: none of which happens here.
    """
    import pycos

    scheduler = _pycos_scheduler("bench-remote-server", tls)
    try:
        if pycos.RPS(gen_inc, name=RPS_NAME).register() != 0:
            raise RuntimeError("pycos: RPS registration failed")
        if pycos.Channel(FAN_NAME).register() != 0:
            raise RuntimeError("pycos: channel registration failed")
        server = pycos.Task(gen_stream_server, scheduler) if stream else pycos.Task(gen_server)
        loc = scheduler.location
        announce_ready(str(loc.addr), int(loc.port))
        server.value(timeout=deadline)
    finally:
        scheduler.terminate()


# -- triopycos client and server (async tasks) --------------------------------------


async def async_one_way(rtask: TrioTask, n: int, big: bool, sz: Sizes, task: TrioTask) -> Outcome:
    import trio

    if await rtask.deliver(("start", task), timeout=OP_TIMEOUT) != 1:
        return Outcome(math.nan, n, "server did not take 'start'")
    send = rtask.send
    refused = sent = batches = marker = 0
    unacked: list[int] = []
    start = clock()
    stop_at = start + sz.cap
    while sent < n:
        upto = min(n, sent + BATCH)
        for i in range(sent, upto):
            if send(BIG if big else i) != 0:
                refused += 1
        sent = upto
        await trio.lowlevel.checkpoint()  # let the connection's writer run
        batches += 1
        if sz.window and batches % sz.window == 0:
            if send(("sync", marker)) == 0:
                unacked.append(marker)
            marker += 1
            if len(unacked) > 1:
                ack = await task.receive(timeout=OP_TIMEOUT)
                if ack != ("synced", unacked.pop(0)):
                    return Outcome(math.nan, sent, f"flow control: got {ack!r}")
        if clock() > stop_at:
            break
    send(("end",))
    reply: Any = None
    for _ in range(len(unacked) + 1):
        reply = await task.receive(timeout=sz.cap + 30.0)
        if not (type(reply) is tuple and reply[0] == "synced"):
            break
    return one_way_outcome(sent, refused, reply, clock() - start)


async def async_deliver(rtask: TrioTask, n: int, cap: float) -> Outcome:
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        if await rtask.deliver(done, timeout=OP_TIMEOUT) != 1:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


async def async_ping_pong(rtask: TrioTask, n: int, cap: float, task: TrioTask) -> Outcome:
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        rtask.send((task, done))
        if await task.receive(timeout=OP_TIMEOUT) != done:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


async def async_locate(loc: Location, n: int, cap: float) -> Outcome:
    from triopycos import Task

    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        if await Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT) is None:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


async def async_rps(rps: TrioRPS, n: int, cap: float) -> dict[str, Outcome]:
    tally = RpsTally()
    missing: list[tuple[TrioTask, int]] = []
    stop_at = clock() + cap
    while tally.calls < n:
        x = tally.calls
        start = clock()
        rtask = await rps(x)
        value = None if rtask is None else await rtask.finish(timeout=RPS_WAIT)
        elapsed = clock() - start
        tally.calls += 1
        if value == x + 1:
            tally.ok += 1
            tally.ok_time += elapsed
        elif value is not None:
            tally.wrong += 1
        elif rtask is not None:
            missing.append((rtask, x))
        if clock() > stop_at:
            break
    for rtask, x in missing:  # a result that came after RPS_WAIT is late, not lost
        if await rtask.finish(timeout=0) == x + 1:
            tally.late += 1
    rps.close()
    return tally.outcomes()


async def async_fan_subscriber(
    rchan: TrioChannel, k: int, publisher: TrioTask, wait: float, task: TrioTask
) -> int:
    """Subscriber ``k``: as ``gen_fan_subscriber``."""
    if await rchan.subscribe(task, timeout=OP_TIMEOUT) != 0:
        publisher.send(("failed", k))
        return -1
    publisher.send(("ready", k))
    count = 0
    receive = task.receive
    while True:
        msg = await receive(timeout=wait)
        if type(msg) is not int:
            break  # ("end",), or None: nothing came for `wait` seconds
        count += 1
        if count % BATCH == 0:
            publisher.send(("ack", k, count))
    publisher.send(("done", k, count))
    await rchan.unsubscribe(task, timeout=OP_TIMEOUT)
    return count


async def async_fan_out(rchan: TrioChannel, n: int, sz: Sizes, task: TrioTask) -> Outcome:
    import trio

    from triopycos import Task

    wait = sz.cap + 30.0
    subs = [Task(async_fan_subscriber, rchan, k, task, wait) for k in range(FAN)]
    for _ in range(FAN):
        msg = await task.receive(timeout=OP_TIMEOUT)
        if not (type(msg) is tuple and msg[0] == "ready"):
            for sub in subs:
                sub.terminate()
            return Outcome(math.nan, n, f"subscribing failed: {msg!r}")
    send = rchan.send
    acked = [0] * FAN
    counts: list[int | None] = [None] * FAN
    limit = sz.window * BATCH
    refused = sent = 0
    start = clock()
    stop_at = start + sz.cap
    while sent < n:
        upto = min(n, sent + BATCH)
        for i in range(sent, upto):
            if send(i) != 0:
                refused += 1
        sent = upto
        await trio.lowlevel.checkpoint()  # let the connection's writer run
        stalled = False
        while limit and sent - min(acked) > limit and not stalled:  # flow control
            stalled = not fan_note(await task.receive(timeout=OP_TIMEOUT), acked, counts)
        if stalled or clock() > stop_at:
            break
    send(("end",))
    while None in counts:
        if not fan_note(await task.receive(timeout=wait), acked, counts):
            break
    elapsed = clock() - start
    for sub in subs:
        await sub.finish(timeout=OP_TIMEOUT)  # unsubscribed: the next run starts afresh
    return fan_outcome(sent, refused, counts, elapsed)


def triopycos_client(port: int, sizes: Sizes) -> dict[str, Outcome]:
    import trio

    from triopycos import RPS, Channel, Location, Task

    results: dict[str, Outcome] = {}
    loc = Location(HOST, port)

    async def client(task: Task) -> None:
        rtask = await Task.locate(SERVER_NAME, loc, timeout=OP_TIMEOUT)
        if rtask is None:
            raise RuntimeError(f"triopycos: {SERVER_NAME!r} not found at {loc}")
        rchan = await Channel.locate(FAN_NAME, loc, timeout=OP_TIMEOUT)
        if rchan is None:
            raise RuntimeError(f"triopycos: channel {FAN_NAME!r} not found at {loc}")
        for sz in (sizes.warmup(), sizes):
            with quiet_gc():
                results["send_small"] = await async_one_way(rtask, sz.small, False, sz, task)
            with quiet_gc():
                results["send_4k"] = await async_one_way(rtask, sz.big, True, sz, task)
            with quiet_gc():
                results["deliver"] = await async_deliver(rtask, sz.deliver, sz.cap)
            with quiet_gc():
                results["ping_pong"] = await async_ping_pong(rtask, sz.ping_pong, sz.cap, task)
            with quiet_gc():
                results["locate"] = await async_locate(loc, sz.locate, sz.cap)
            # A fresh RPS reference per run, as for pycos.
            rps = await RPS.locate(RPS_NAME, loc, timeout=OP_TIMEOUT)
            if rps is None:
                raise RuntimeError(f"triopycos: RPS {RPS_NAME!r} not found at {loc}")
            with quiet_gc():
                results.update(await async_rps(rps, sz.rps, sz.rps_time))
            with quiet_gc():
                results["fan_out"] = await async_fan_out(rchan, sz.fan, sz, task)
        await rtask.deliver(("quit",), timeout=OP_TIMEOUT)

    async def main() -> None:
        async with client_node("bench-remote-client", loc) as node:
            await node.spawn(client).finish()

    trio.run(main)
    if len(results) != len(METRICS):
        raise RuntimeError("triopycos client task failed (see the warning above)")
    return results


def bench_node(
    name: str, tls: TlsFiles | None = None, dest_path: str | None = None
) -> AbstractAsyncContextManager[TrioPycos]:
    """``open_pycos`` of a benchmark's node: on HOST, any port, no discovery, the
    benchmarks' secret, TLS with ``tls``'s files."""
    from triopycos import open_pycos

    return open_pycos(
        name=name,
        node=HOST,
        tcp_port=0,
        discover_peers=False,
        secret=SECRET,
        certfile=tls.cert if tls else None,
        keyfile=tls.key if tls else None,
        cafile=tls.ca if tls else None,
        dest_path=dest_path,
    )


@asynccontextmanager
async def client_node(
    name: str, loc: Location, tls: TlsFiles | None = None
) -> AsyncIterator[TrioPycos]:
    """A benchmark's client node (``bench_node``), peered with the server node at
    ``loc``."""
    async with bench_node(name, tls) as node:
        if await node.peer(loc) != 0:
            raise RuntimeError(f"triopycos: peer({loc}) failed")
        yield node


def triopycos_serve(deadline: float, tls: TlsFiles | None = None) -> None:
    import trio

    from triopycos import RPS, Channel

    async def main() -> None:
        with trio.move_on_after(deadline):
            async with bench_node("bench-remote-server", tls) as node:
                if RPS(async_inc, name=RPS_NAME).register() != 0:
                    raise RuntimeError("triopycos: RPS registration failed")
                if Channel(FAN_NAME).register() != 0:
                    raise RuntimeError("triopycos: channel registration failed")
                node.spawn(async_server)
                announce_ready(node.location.addr, node.location.port)

    trio.run(main)


# -- raw trio floor: length-prefixed frames, no codec, no tasks ---------------------
#
# Frame: 4-byte big-endian length, then a one-byte type and the payload.
#   b"S" start: reset the count, echo  b"C" counted   b"E" end: reply b"N" + count
#   b"P" echo the frame back           b"Q" quit

_LEN = struct.Struct(">I")


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _LEN.pack(len(payload) + 1) + kind + payload


class FrameReader:
    """Reads whole frames from a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.pos = 0

    def frames(self) -> list[bytes]:
        """Every complete frame in the buffer (consumed)."""
        buf, pos, out = self.buf, self.pos, []
        end = len(buf)
        while end - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < length:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if pos:
            del buf[:pos]
        self.pos = 0
        return out

    async def fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            return False
        self.buf += data
        return True

    async def one(self) -> bytes:
        while True:
            got = self.frames()
            if got:
                if len(got) != 1:
                    raise RuntimeError("raw: more than one reply frame")
                return got[0]
            if not await self.fill():
                raise RuntimeError("raw: connection closed")


def raw_serve(deadline: float, tls: TlsFiles | None = None) -> None:
    """The floor's server; with ``tls``, every connection is TLS (``raw_tls_contexts``)."""
    import trio

    async def handle(stream: trio.abc.Stream, done: trio.Event) -> None:
        reader = FrameReader(stream)
        count = 0
        async with stream:
            while await reader.fill():
                out: list[bytes] = []
                for f in reader.frames():
                    kind = f[:1]
                    if kind == b"C":
                        count += 1
                    elif kind == b"P":
                        out.append(_LEN.pack(len(f)) + f)
                    elif kind == b"S":
                        count = 0
                        out.append(_LEN.pack(len(f)) + f)
                    elif kind == b"E":
                        out.append(frame(b"N", b"%d" % count))
                    elif kind == b"Q":
                        done.set()
                        return
                if out:
                    await stream.send_all(b"".join(out))

    async def main() -> None:
        done = trio.Event()
        with trio.move_on_after(deadline):
            tcp = await trio.open_tcp_listeners(0, host=HOST)
            listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
            if tls is not None:
                context = raw_tls_contexts(tls)[0]
                listeners = [trio.SSLListener(lst, context) for lst in tcp]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, lambda s: handle(s, done), listeners)
                addr = tcp[0].socket.getsockname()
                announce_ready(str(addr[0]), int(addr[1]))
                await done.wait()
                nursery.cancel_scope.cancel()

    trio.run(main)


async def raw_one_way(
    stream: trio.abc.Stream, reader: FrameReader, n: int, big: bool, cap: float
) -> Outcome:
    await stream.send_all(frame(b"S"))
    await reader.one()
    pack = _LEN.pack
    big_frame = frame(b"C", BIG)
    sent = 0
    start = clock()
    stop_at = start + cap
    while sent < n:
        upto = min(n, sent + BATCH)
        if big:
            chunk = big_frame * (upto - sent)
        else:
            parts = []
            for i in range(sent, upto):
                payload = b"C%d" % i
                parts.append(pack(len(payload)))
                parts.append(payload)
            chunk = b"".join(parts)
        await stream.send_all(chunk)
        sent = upto
        if clock() > stop_at:
            break
    await stream.send_all(frame(b"E"))
    reply = await reader.one()
    count = int(reply[1:]) if reply[:1] == b"N" else -1
    return one_way_outcome(sent, 0, ("count", count), clock() - start)


async def raw_echo(
    stream: trio.abc.Stream, reader: FrameReader, n: int, cap: float, payload: bytes
) -> Outcome:
    failed = done = 0
    start = clock()
    stop_at = start + cap
    while done < n:
        request = frame(b"P", payload + b"%d" % done)
        await stream.send_all(request)
        if _LEN.pack(len(request) - 4) + await reader.one() != request:
            failed += 1
        done += 1
        if clock() > stop_at:
            break
    return per_op_outcome(done, failed, clock() - start)


def raw_client(port: int, sizes: Sizes) -> dict[str, Outcome]:
    import trio

    results: dict[str, Outcome] = {}

    async def main() -> None:
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            reader = FrameReader(stream)
            for sz in (sizes.warmup(), sizes):
                with quiet_gc():
                    results["send_small"] = await raw_one_way(
                        stream, reader, sz.small, False, sz.cap
                    )
                with quiet_gc():
                    results["send_4k"] = await raw_one_way(stream, reader, sz.big, True, sz.cap)
                with quiet_gc():
                    # deliver: request and its one-value answer; ping-pong: a (task, i)
                    # message and i back.  Without a codec or tasks both are one echo.
                    results["deliver"] = await raw_echo(stream, reader, sz.deliver, sz.cap, b"d")
                with quiet_gc():
                    results["ping_pong"] = await raw_echo(
                        stream, reader, sz.ping_pong, sz.cap, b"p"
                    )
                with quiet_gc():
                    results["locate"] = await raw_echo(stream, reader, sz.locate, sz.cap, b"l")
            await stream.send_all(frame(b"Q"))

    trio.run(main)
    return results


# -- process plumbing ---------------------------------------------------------------


def run_round(system: str, *, quick: bool, window: int, deadline: float) -> dict[str, float]:
    """One round of one system (also what ``bench/run.py`` calls): the client's
    results, ``"<metric>"`` and ``"<metric>.failed"`` for each metric."""
    script = str(Path(__file__).resolve())
    common = [
        "--deadline",
        f"{deadline:g}",
        "--window",
        str(window),
        *(["--quick"] if quick else []),
    ]
    return run_with_server(
        [script, "--serve", system, *common],
        lambda port: [script, "--client", system, "--port", str(port), *common],
        timeout=deadline + 10,
    )


# -- worker entry points ------------------------------------------------------------


def serve(system: str, deadline: float) -> None:
    arm_watchdog(deadline + 5, exit_on_stdin_eof=True)
    if system == "triopycos":
        triopycos_serve(deadline)
    elif system in ("pycos", "pycos-stream"):
        pycos_serve(deadline, stream=system == "pycos-stream")
    else:
        raw_serve(deadline)


def client(system: str, port: int, sizes: Sizes, deadline: float) -> dict[str, float]:
    arm_watchdog(deadline)
    runners: dict[str, Callable[[], dict[str, Outcome]]] = {
        "triopycos": lambda: triopycos_client(port, sizes),
        "pycos": lambda: pycos_client(port, sizes, stream=False),
        "pycos-stream": lambda: pycos_client(port, sizes, stream=True),
        "raw": lambda: raw_client(port, sizes),
    }
    outcomes = runners[system]()
    flat: dict[str, float] = {}
    for key, outcome in outcomes.items():
        flat[key] = outcome.value
        flat[f"{key}.failed"] = float(outcome.failed)
        if outcome.detail:
            print(f"{system} {key}: {outcome.detail}", file=sys.stderr)
    return flat


# -- driver -------------------------------------------------------------------------


def _cell(values: Sequence[float], scale: float) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return format_value(median(finite) * scale) if finite else "n/a"


def report(
    collected: dict[str, dict[str, list[float]]],
    systems: Sequence[str],
    failed_rounds: dict[str, int],
) -> str:
    headers = [
        "benchmark",
        *(COLUMN_NAMES[s] for s in systems),
        "ratio (>1: triopycos better)",
    ]
    rows: list[list[str]] = []
    notes = [
        f"  {COLUMN_NAMES[s]}: {n} round(s) failed (see the errors above)"
        for s, n in failed_rounds.items()
        if n
    ]
    for metric in METRICS:
        cells = [f"{metric.label} ({metric.unit})"]
        for system in systems:
            cells.append(_cell(collected[system][metric.key], metric.scale))
        r = ratio(
            metric,
            _median(collected, "triopycos", metric.key),
            _median(collected, "pycos", metric.key),
        )
        cells.append("n/a" if math.isnan(r) else f"{r:.1f}x")
        rows.append(cells)
        for system in systems:
            values = collected[system][metric.key]
            failed = sum(collected[system][f"{metric.key}.failed"])
            no_value = len([v for v in values if not math.isfinite(v)])
            if failed or no_value:
                notes.append(
                    f"  {COLUMN_NAMES[system]}, {metric.label}: {failed:,.0f} failed "
                    f"messages/calls; {no_value} of {len(values)} run(s) without a value"
                )
    text = format_table(headers, rows)
    if notes:
        text += "\n\nFailures:\n" + "\n".join(notes)
    else:
        text += "\n\nNo failures: every send was accepted, every message arrived, every "
        text += "deliver returned 1 and every reply was the expected one."
    return text


def _median(collected: dict[str, dict[str, list[float]]], system: str, key: str) -> float:
    values = [v for v in collected[system][key] if math.isfinite(v)]
    return median(values) if values else math.nan


def targets(collected: dict[str, dict[str, list[float]]]) -> str:
    small = _median(collected, "triopycos", "send_small")
    small_pycos = _median(collected, "pycos", "send_small")
    deliver = _median(collected, "triopycos", "deliver")
    deliver_pycos = _median(collected, "pycos", "deliver")
    deliver_raw = _median(collected, "raw", "deliver")

    def check(label: str, value: float, shown: str, ok: bool) -> str:
        if math.isnan(value):
            return f"  {label}: n/a"
        return f"  {label}: {shown}, {'met' if ok else 'NOT met'}"

    small_x = small / small_pycos
    deliver_x = deliver / deliver_pycos
    deliver_raw_x = deliver / deliver_raw
    rps_us = _median(collected, "triopycos", "rps") * 1e6
    # Every call of every round (warm-ups aside) must have given its result.
    rps_failed = (
        sum(collected["triopycos"]["rps.failed"]) if collected["triopycos"]["rps"] else math.nan
    )
    lines = [
        "Targets:",
        check("one-way small >= 100k msg/s", small, format_value(small), small >= 100_000),
        check("one-way small >= 30x pycos", small_x, f"{small_x:.1f}x", small_x >= 30),
        check("deliver time <= 0.3x pycos's", deliver_x, f"{deliver_x:.2f}x", deliver_x <= 0.3),
        check(
            "deliver time <= 2.5x the raw echo's",
            deliver_raw_x,
            f"{deliver_raw_x:.2f}x",
            deliver_raw_x <= 2.5,
        ),
        check("RPS call to result <= 400 µs", rps_us, f"{format_value(rps_us)} µs", rps_us <= 400),
        check(
            "RPS: no call without its result",
            rps_failed,
            f"{rps_failed:,.0f} without",
            rps_failed == 0,
        ),
    ]
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> int:
    started = clock()
    systems = [*SYSTEMS, *(["pycos-stream"] if args.pycos_stream else [])]
    collected: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
    errors = 0
    failed_rounds = dict.fromkeys(systems, 0)
    rounds_done = 0
    slowest_round = 0.0
    load_before = load_average()
    for rnd in range(args.rounds):
        elapsed = clock() - started
        if rnd and elapsed + slowest_round > args.budget:
            print(
                f"stopping after {rnd} round(s): another would pass the "
                f"{args.budget:.0f} s budget (--budget)",
                file=sys.stderr,
            )
            break
        shift = rnd % len(systems)
        for system in systems[shift:] + systems[:shift]:
            try:
                data = run_round(
                    system, quick=args.quick, window=args.window, deadline=args.deadline
                )
            except (WorkerError, subprocess.TimeoutExpired) as exc:
                errors += 1
                failed_rounds[system] += 1
                print(f"round {rnd + 1}, {system}: FAILED: {exc}", file=sys.stderr)
                continue
            for key, value in data.items():
                collected[system][key].append(value)
        rounds_done += 1
        slowest_round = max(slowest_round, clock() - started - elapsed)
        print(f"round {rnd + 1}/{args.rounds} done ({clock() - started:.1f} s)", file=sys.stderr)

    sizes = {s: sizes_for(s, args.quick, args.window) for s in systems}
    size_text = "; ".join(
        f"{COLUMN_NAMES[s]}: {sz.small:,} small / {sz.big:,} 4 KiB msgs, "
        f"{sz.deliver:,} delivers, {sz.ping_pong:,} ping-pongs, {sz.locate:,} locates"
        + (f", {sz.rps:,} RPS calls, {sz.fan:,} fan-out msgs" if s != "raw" else "")
        for s, sz in sizes.items()
    )
    print(
        f"Remote messaging benchmarks: median of {rounds_done} round(s); each round one "
        "server + one client process per system, over 127.0.0.1\n"
        f"python {platform.python_version()}, trio {version('trio')}, "
        f"cbor2 {version('cbor2')}, pycos {version('pycos')}"
        f"{' (--quick sizes)' if args.quick else ''}; {os.cpu_count()} CPUs, "
        f"load average {load_before} before, {load_average()} after (other processes "
        "competing for the CPUs inflate the round-trip times)\n"
        f"sizes: {size_text}; each loop also stops after {sizes['triopycos'].cap:g} s "
        f"(pycos's RPS loops: {sizes['pycos'].rps_time:g} s); "
        + (
            f"one-way flow control: a sync marker every {args.window * BATCH:,} sends; "
            f"fan-out: the publisher stays at most {args.window * BATCH:,} messages ahead of "
            "the slowest subscriber\n"
            if args.window
            else "no flow control (--window 0)\n"
        )
        + f"RPS: `await rps(x)` then `await rtask.finish(timeout={RPS_WAIT:g})` for an RPS "
        "returning x + 1; time = mean over the calls that gave x + 1; lost = the result "
        "never came (pycos 4.12.2 loses it when the task's status beats the call's "
        "reply, and when a later task reuses a lost one's id); "
        f"fan-out: the client publishes to the server's channel, {FAN} subscriber "
        "tasks in the client; a message counts once all of them got it\n"
        "ratio = how many times better triopycos is than pycos (> 1: triopycos better, "
        "for msg/s and µs alike); raw trio = length-prefixed TCP without codec or tasks "
        "(the floor; it has no RPS or channel)\n"
    )
    print(report(collected, systems, failed_rounds))
    print()
    print(targets(collected))
    print(f"\ntotal time {clock() - started:.1f} s")
    return 1 if errors else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Remote messaging benchmarks over loopback: triopycos vs pycos 4.12.2 "
        "vs raw trio TCP, side by side."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument(
        "--pycos-stream",
        action="store_true",
        help="also measure pycos with stream_send=True (persistent connections)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="hard time limit of each worker process, s (default 90, quick 30)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=WINDOW,
        help=f"flow control: one-way, a sync marker every WINDOW x {BATCH} sends, at most "
        f"two unanswered; fan-out, the publisher at most WINDOW x {BATCH} messages ahead of "
        f"the slowest subscriber (default {WINDOW}; 0: none, the senders only yield every "
        f"{BATCH} sends)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="start no round that would end after this many seconds (default 170, quick 28)",
    )
    parser.add_argument(
        "--serve", choices=[*SYSTEMS, *OPTIONAL_SYSTEMS], help="worker: run a server"
    )
    parser.add_argument(
        "--client", choices=[*SYSTEMS, *OPTIONAL_SYSTEMS], help="worker: run a client"
    )
    parser.add_argument("--port", type=int, default=0, help="worker: the server's port")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.budget is None:
        args.budget = 28.0 if args.quick else 170.0
    if args.deadline is None:
        args.deadline = 30.0 if args.quick else 90.0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.window < 0:
        parser.error("--window must be at least 0")
    if args.client and not 0 < args.port < 65536:
        parser.error("--client needs --port")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.deadline)
        return 0
    if args.client:
        sizes = sizes_for(args.client, args.quick, args.window)
        emit_json(client(args.client, args.port, sizes, args.deadline))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
