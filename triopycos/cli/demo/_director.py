"""The demo itself: node alpha (this process) starts beta and gamma (two more
processes), uses every feature on them, and says what happens in plain lines.

Workers report to alpha's task ``director``, whose messages are forwarded into a
memory channel; the script reads them with ``Inbox.expect``, which keeps the ones
it is not waiting for yet (reports from two processes arrive in any order).  Every
wait is bounded; anything unexpected fails the demo with ``DemoFailed``.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import trio

from ... import Limits, Pycos, open_pycos
from ..._channel import Channel
from ..._rps import RPS
from ..._task import Task
from ...values import Location, MonitorStatus, PeerStatus
from .._progress import ProgressBar, size_text
from ._worker import HOST
from ._workers import Worker, Workers, open_workers

__all__ = ["DemoFailed", "run_script"]

#: The longest wait for any one thing the demo expects.
STEP_TIMEOUT = 15.0
PAYLOAD_SIZE = 4 * 1024 * 1024
#: Small chunks, so the progress bar has something to show on a fast loopback.
CHUNK_SIZE = 256 * 1024
PRIMES_BELOW = 100_000
#: What the demo says it shows: a killed node is seen Offline within this.
OFFLINE_WITHIN = 1.0


class DemoFailed(Exception):
    """A step of the demo did not go as it should."""


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def title(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def line(self, text: str) -> None:
        print("  " + text, file=self.out, flush=True)


class Inbox:
    """Messages for alpha's ``director`` task, taken in the order the script wants."""

    def __init__(self, channel: trio.MemoryReceiveChannel[Any]) -> None:
        self._channel = channel
        self._kept: list[Any] = []

    async def expect(self, wanted: Callable[[Any], bool], what: str) -> Any:
        for index, message in enumerate(self._kept):
            if wanted(message):
                return self._kept.pop(index)
        with trio.move_on_after(STEP_TIMEOUT):
            async for message in self._channel:
                if wanted(message):
                    return message
                self._kept.append(message)
        raise DemoFailed(f"waited {STEP_TIMEOUT:.0f} s for {what}")


def peer_note(name: str, status: int) -> Callable[[Any], bool]:
    """Alpha's own ``PeerStatus`` about ``name``."""
    return lambda m: isinstance(m, PeerStatus) and m.name == name and m.status == status


def report(*fields: Any) -> Callable[[Any], bool]:
    """A worker's report tuple starting with ``fields``."""
    n = len(fields)
    return lambda m: isinstance(m, tuple) and len(m) >= n and m[:n] == fields


async def _forward(task: Task, into: trio.MemorySendChannel[Any]) -> None:
    task.set_daemon()
    while True:
        into.send_nowait(await task.receive())


async def _alpha_listener(task: Task, into: trio.MemorySendChannel[Any]) -> None:
    task.set_daemon()
    while True:
        into.send_nowait(("news", "alpha", await task.receive()))


def _check(condition: bool, text: str) -> None:
    if not condition:
        raise DemoFailed(text)


async def run_script(out: TextIO, folder: Path, lifetime: float) -> None:
    say = Narrator(out)
    secret = secrets.token_hex(16)
    say.title(
        "triopycos demo: three nodes on 127.0.0.1, each in its own process, sharing a random secret"
    )
    into, messages = trio.open_memory_channel[Any](math.inf)
    inbox = Inbox(messages)
    async with open_pycos(
        name="alpha",
        node=HOST,
        tcp_port=0,
        discover_peers=False,
        secret=secret,
        limits=Limits(file_chunk_size=CHUNK_SIZE),
    ) as alpha:
        director = alpha.spawn(_forward, into)
        _check(director.register("director") == 0, "cannot register the director task")
        alpha.peer_status(director)
        news = Channel("news")
        _check(news.register() == 0, "cannot register the news channel")
        _check(await news.subscribe(alpha.spawn(_alpha_listener, into)) == 0, "subscribe")
        async with open_workers(folder, secret, alpha.location.port, lifetime) as workers:
            await _peering(say, inbox, alpha, workers, folder)
            beta, gamma = workers.running
            assert beta.location is not None and gamma.location is not None
            await _messaging(say, inbox, director, beta.location)
            await _monitoring(say, inbox, director, gamma.location)
            await _fan_out(say, inbox, news)
            await _rps(say)
            await _file(say, alpha, gamma.location, folder)
            await _kill(say, inbox, workers, gamma)
            await _stop(say, inbox, workers, beta)
    # open_workers has reaped every worker, whatever happened; say so only if true.
    left = [w.role for w in workers.running if w.process.returncode is None]
    _check(not left, f"still running: {left}")
    say.line("alpha left; beta and gamma have exited: no process left behind")


async def _start(inbox: Inbox, workers: Workers, role: str, **kwargs: Any) -> Worker:
    worker = await workers.start(role, **kwargs)
    ready = await inbox.expect(report("ready", role), f"{role} to start")
    worker.location = ready[2]
    return worker


async def _peering(
    say: Narrator, inbox: Inbox, alpha: Pycos, workers: Workers, folder: Path
) -> None:
    say.title("peering")
    say.line(f"alpha (this process, pid {os.getpid()}) listens at {alpha.location}")
    beta = await _start(inbox, workers, "beta")
    say.line(f"beta started (pid {beta.pid}) at {beta.location}; it peered with alpha")
    await inbox.expect(peer_note("beta", PeerStatus.Online), "alpha to see beta")
    say.line("alpha sees beta online")
    assert beta.location is not None
    gamma = await _start(
        inbox, workers, "gamma", peers=[beta.location.port], dest_path=folder / "gamma"
    )
    say.line(f"gamma started (pid {gamma.pid}) at {gamma.location}; it peered with alpha and beta")
    await inbox.expect(peer_note("gamma", PeerStatus.Online), "alpha to see gamma")
    await inbox.expect(report("peer", "beta", "gamma", "online"), "beta to see gamma")
    say.line("alpha sees gamma online; beta sees gamma online")
    here = await alpha.status()
    assert here is not None
    say.line("alpha's peers: " + ", ".join(f"{p.name} at {p.location}" for p in here.peers))


async def _messaging(say: Narrator, inbox: Inbox, director: Task, beta: Location) -> None:
    say.title("a named task, located and messaged")
    greeter = await Task.locate("greeter", timeout=5)
    _check(greeter is not None, "greeter not found")
    assert greeter is not None
    _check(greeter.location == beta, f"greeter found at {greeter.location}, not on beta")
    say.line(f'Task.locate("greeter") asked every peer: found on beta at {greeter.location}')
    sent = greeter.send(("hello", director, "alpha"))
    say.line(f'greeter.send(("hello", director, "alpha")) -> {sent} (queued)')
    answer = await inbox.expect(lambda m: isinstance(m, str), "greeter's answer")
    say.line(f"greeter answered: {answer!r}")
    note = "this one is acknowledged"
    delivered = await greeter.deliver(("note", note), timeout=5)
    _check(delivered == 1, f"deliver returned {delivered}")
    say.line(f'greeter.deliver(("note", {note!r}), timeout=5) -> 1: in its mailbox')
    got = await inbox.expect(report("greeter got"), "greeter's report")
    say.line(f"greeter reports it got {got[1]!r}")


async def _monitoring(say: Narrator, inbox: Inbox, director: Task, gamma: Location) -> None:
    say.title("a remote task, monitored and terminated")
    sleeper = await Task.locate("sleeper", gamma, timeout=5)
    _check(sleeper is not None, "sleeper not found on gamma")
    assert sleeper is not None
    say.line(f'Task.locate("sleeper", {gamma}) -> the sleeper task on gamma')
    _check(await director.monitor(sleeper) == 0, "monitor failed")
    say.line("director.monitor(sleeper) -> 0")
    _check(sleeper.terminate() == 0, "terminate failed")
    say.line("sleeper.terminate() -> 0")
    status = await inbox.expect(lambda m: isinstance(m, MonitorStatus), "the sleeper's end")
    kind = getattr(status.type, "__name__", status.type)
    _check(status.type is GeneratorExit, f"the sleeper ended with {kind}")
    say.line(f"the monitor got MonitorStatus(type={kind}): the sleeper was terminated")


async def _fan_out(say: Narrator, inbox: Inbox, news: Channel) -> None:
    say.title("a channel fanning out")
    text = "hello, everyone"
    say.line('channel "news" on alpha; subscribed: a task on alpha, one on beta, one on gamma')
    count = await news.deliver(text, timeout=5, n=3)
    _check(count == 3, f"deliver reached {count} subscribers, not 3")
    say.line(f"news.deliver({text!r}, n=3) -> 3")
    for role in ("alpha", "beta", "gamma"):
        got = await inbox.expect(report("news", role), f"{role}'s listener")
        say.line(f"{role}'s listener got {got[2]!r}")


async def _rps(say: Narrator) -> None:
    say.title("a remote procedure service (RPS)")
    count_primes = await RPS.locate("count_primes", timeout=5)
    _check(count_primes is not None, "count_primes not found")
    assert count_primes is not None
    say.line(f'RPS.locate("count_primes") -> the RPS on beta at {count_primes.location}')
    rtask = await count_primes(PRIMES_BELOW)
    _check(isinstance(rtask, Task), "the RPS call failed")
    assert isinstance(rtask, Task)
    say.line(f"count_primes({PRIMES_BELOW}) -> a new task on beta")
    result = await rtask.finish(timeout=STEP_TIMEOUT)
    _check(result == 9592, f"count_primes gave {result!r}")
    say.line(f"its finish() -> {result}: primes below {PRIMES_BELOW}")


async def _file(say: Narrator, alpha: Pycos, gamma: Location, folder: Path) -> None:
    say.title("a file sent with send_file")
    payload = folder / "demo-payload.bin"
    content = os.urandom(PAYLOAD_SIZE)
    await trio.to_thread.run_sync(payload.write_bytes, content)
    say.line(f'alpha.send_file(gamma, "{payload.name}" ({size_text(PAYLOAD_SIZE)}), dir="inbox")')
    bar = ProgressBar(say.out, prefix="  ")
    try:
        result = await alpha.send_file(gamma, payload, dir="inbox", progress=bar)
    finally:
        bar.close()
    _check(result == 0, f"send_file returned {result!r}")
    saved = folder / "gamma" / "inbox" / payload.name
    same = await trio.to_thread.run_sync(_same_content, saved, content)
    _check(same, f"{saved} is missing or differs")
    say.line(f"-> 0: gamma saved it as {saved}; same sha256")


def _same_content(path: Path, content: bytes) -> bool:
    if not path.is_file():
        return False
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest()


async def _kill(say: Narrator, inbox: Inbox, workers: Workers, gamma: Worker) -> None:
    say.title("a node dies")
    start = trio.current_time()
    workers.kill(gamma)
    say.line(f"gamma (pid {gamma.pid}) killed with SIGKILL: no goodbye")
    await inbox.expect(peer_note("gamma", PeerStatus.Offline), "alpha to see gamma go")
    seen_by_alpha = trio.current_time() - start
    say.line(f"alpha saw gamma go offline after {seen_by_alpha * 1000:.1f} ms")
    await inbox.expect(report("peer", "beta", "gamma", "offline"), "beta to see gamma go")
    seen_by_beta = trio.current_time() - start
    say.line(f"beta saw gamma go offline and told alpha, after {seen_by_beta * 1000:.1f} ms")
    slowest = max(seen_by_alpha, seen_by_beta)
    if slowest < OFFLINE_WITHIN:
        say.line("both within a second")
    else:  # said as it is: a very busy machine can be this slow
        say.line(f"slower than the second expected ({slowest:.2f} s): is the machine busy?")


async def _stop(say: Narrator, inbox: Inbox, workers: Workers, beta: Worker) -> None:
    say.title("stopping")
    code = await workers.stop(beta)
    _check(code == 0, f"beta exited with status {code}; its log ends:\n{beta.log_tail()}")
    await inbox.expect(peer_note("beta", PeerStatus.Offline), "alpha to see beta go")
    say.line("beta left, saying goodbye: alpha saw it go offline at once")
