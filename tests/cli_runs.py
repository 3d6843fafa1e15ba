"""Running ``python -m triopycos ...`` from tests: always through tests/procs.py
(loopback only, bounded in time), never in-process (``main()`` owns the logging
configuration and ``trio.run``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from procs import NodeProcess, open_node_process

from triopycos import Location

__all__ = ["LIMIT", "Ran", "alive", "cli_node", "lines_with", "run_cli", "wait_for_line"]

#: Wall-clock bound on any one command (they take well under a second here).
LIMIT = 30


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = LIMIT) -> Ran:
    """``triopycos ARGS`` to its end: exit code and output."""
    async with open_node_process(["-m", "triopycos", *args], env=env, timeout=timeout) as proc:
        with trio.fail_after(timeout):
            code = await proc.wait()
    return Ran(code, proc.stdout, proc.stderr)


@asynccontextmanager
async def cli_node(*args: str) -> AsyncIterator[tuple[NodeProcess, Location]]:
    """``triopycos node --tcp-port 0 ARGS`` running, and where it serves."""
    argv = ["-m", "triopycos", "node", "--tcp-port", "0", *args]
    async with open_node_process(argv, timeout=LIMIT) as proc:
        with trio.fail_after(LIMIT):
            await proc.wait_for_output(" serving at ")
        line = next(ln for ln in proc.stdout.splitlines() if " serving at " in ln)
        first = line.split(" serving at ", 1)[1].split(",")[0]
        host, _, port = first.strip("[").replace("]:", ":").rpartition(":")
        yield proc, Location(host, int(port))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def lines_with(text: str, part: str) -> list[str]:
    return [line for line in text.splitlines() if part in line]


async def wait_for_line(proc: NodeProcess, part: str, *, count: int = 1) -> None:
    """Until ``part`` has appeared ``count`` times on the process's stdout."""
    with trio.fail_after(LIMIT):
        await proc.wait_for_output(part, count=count)
