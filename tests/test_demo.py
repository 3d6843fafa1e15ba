"""``python -m triopycos demo`` as a user runs it: a process on loopback (started
through tests/procs.py), which starts two more.  It must tell the whole story, exit
0, and leave no process behind, also when it is interrupted or a worker dies."""

from __future__ import annotations

import os
import re
import signal

import trio
from cli_runs import LIMIT, alive, run_cli, wait_for_line
from procs import open_node_process

from triopycos.cli._exit import ExitCode

DEMO = ["-m", "triopycos", "demo"]


def worker_pids(text: str) -> dict[str, int]:
    return {role: int(pid) for role, pid in re.findall(r"(beta|gamma) started \(pid (\d+)\)", text)}


async def test_the_demo_tells_the_whole_story_and_leaves_nothing_behind() -> None:
    ran = await run_cli("demo")
    assert ran.code == 0, ran
    out = ran.stdout
    for part in [
        # peering
        "alpha sees beta online",
        "alpha sees gamma online; beta sees gamma online",
        "alpha's peers: beta at 127.0.0.1:",
        # a named task located and messaged; deliver acknowledged
        'Task.locate("greeter") asked every peer: found on beta at 127.0.0.1:',
        "-> 0 (queued)",
        "greeter answered: 'hello, alpha! (greeter on beta)'",
        "timeout=5) -> 1: in its mailbox",
        "greeter reports it got 'this one is acknowledged'",
        # monitored and terminated
        "director.monitor(sleeper) -> 0",
        "sleeper.terminate() -> 0",
        "the monitor got MonitorStatus(type=GeneratorExit)",
        # a channel fanning out
        "news.deliver('hello, everyone', n=3) -> 3",
        "alpha's listener got 'hello, everyone'",
        "beta's listener got 'hello, everyone'",
        "gamma's listener got 'hello, everyone'",
        # RPS
        "its finish() -> 9592: primes below 100000",
        # send_file with its progress bar
        "100%  4.0 MiB of 4.0 MiB",
        "-> 0: gamma saved it as ",
        "; same sha256",
        # a node killed, seen offline by the others
        "killed with SIGKILL",
        "alpha saw gamma go offline after ",
        "beta saw gamma go offline and told alpha, after ",
        # and the end
        "beta left, saying goodbye: alpha saw it go offline at once",
        "no process left behind",
        "done in ",
    ]:
        assert part in out, part
    # The progress bar counts up, a line per quarter (not a terminal here).
    shown = [int(p) for p in re.findall(r"\] +(\d+)%", out)]
    assert shown[0] == 0 and shown[-1] == 100 and shown == sorted(set(shown))
    # Offline is seen at once: a generous bound (the demo itself says "within a second").
    for who in ("alpha saw gamma", "beta saw gamma"):
        ms = float(re.search(who + r" go offline.*?after ([\d.]+) ms", out)[1])  # type: ignore[index]
        assert ms < 5000
    pids = worker_pids(out)
    assert set(pids) == {"beta", "gamma"}
    assert not any(alive(pid) for pid in pids.values())
    assert ran.stderr == ""


async def test_ctrl_c_stops_the_demo_and_its_workers() -> None:
    async with open_node_process(DEMO, timeout=LIMIT) as proc:
        await wait_for_line(proc, "gamma started (pid")
        os.kill(proc.pid, signal.SIGINT)
        with trio.fail_after(LIMIT):
            assert await proc.wait() == ExitCode.INTERRUPTED
    assert "triopycos demo: interrupted" in proc.stderr
    pids = worker_pids(proc.stdout)
    assert set(pids) == {"beta", "gamma"}
    assert not any(alive(pid) for pid in pids.values())


async def test_a_worker_that_dies_fails_the_demo_at_once() -> None:
    async with open_node_process(DEMO, timeout=LIMIT) as proc:
        await wait_for_line(proc, "beta started (pid")
        beta = worker_pids(proc.stdout)["beta"]
        os.kill(beta, signal.SIGKILL)
        with trio.fail_after(LIMIT):
            assert await proc.wait() == ExitCode.FAILED
    assert f"the demo failed: beta (pid {beta}) exited unexpectedly with status -9" in proc.stderr
    assert not any(alive(pid) for pid in worker_pids(proc.stdout).values())


async def test_the_demo_gives_up_after_its_timeout() -> None:
    # Two Python processes cannot even start in 50 ms.
    ran = await run_cli("demo", "--timeout", "0.05")
    assert ran.code == ExitCode.FAILED, ran
    assert "the demo failed: the demo took longer than 0.05 s" in ran.stderr
    assert not any(alive(pid) for pid in worker_pids(ran.stdout).values())
    ran = await run_cli("demo", "--timeout", "-1")
    assert ran.code == ExitCode.USAGE and "--timeout must be > 0" in ran.stderr
