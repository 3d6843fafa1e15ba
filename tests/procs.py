"""Start node processes from tests: the one helper for it.

Use :func:`open_node_process` for every process a test starts that could open
sockets (node processes in particular).  It enforces the network rule on what
it can see (see ``docs/testing.md``, "The network guard"):

* the node address is numeric and loopback (127.0.0.0/8 or ::1), unless the
  process runs inside a network namespace the test created (``netns=``), in
  which case it runs under ``ip netns exec NAME``;
* the node address is handed over in the environment as
  ``TRIOPYCOS_TEST_NODE``; the code being run must use it (e.g. pass it as
  ``node=`` to ``open_pycos``, and never rely on the default node);
* the process's lifetime is bounded: it is terminated (then killed, with its
  whole process group) when the ``async with`` block ends, and killed with the
  block cancelled after ``timeout`` seconds of wall-clock time;
* its stdout and stderr are captured (to temporary files), and attached to any
  exception leaving the block.

Example::

    code = "import os; print('node', os.environ['TRIOPYCOS_TEST_NODE'], flush=True)"
    async with open_node_process(["-c", code]) as proc:
        await proc.wait_for_output("node 127.0.0.1")
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import IO

import trio
from netguard import current_guard, is_allowed_host

__all__ = [
    "NODE_ENV",
    "NodeProcess",
    "NodeProcessTimeout",
    "open_node_process",
]

NODE_ENV = "TRIOPYCOS_TEST_NODE"
"""Environment variable carrying the node address the process must use."""

NETNS_DIR = Path("/run/netns")
_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TAIL = 4000  # characters of each stream shown in error notes


class NodeProcessTimeout(TimeoutError):
    """The process outlived ``timeout`` and was killed."""


def _refuse(what: str) -> Exception:
    """A refusal: recorded on the network guard if one is running, else a ValueError."""
    guard = current_guard()
    if guard is not None:
        return guard.refuse(what)
    return ValueError(f"network rule: refusing {what}")


def _check_node(node: str, netns: str | None) -> None:
    try:
        ipaddress.ip_address(node.partition("%")[0])
    except ValueError:
        raise _refuse(f"node {node!r}: give a numeric address, not a host name") from None
    if netns is None and not is_allowed_host(node):
        raise _refuse(
            f"node {node!r} outside a network namespace: use 127.0.0.1 (or any "
            "127.0.0.0/8 address, or ::1), or pass netns= naming a namespace the test created"
        )


def _check_netns(netns: str) -> None:
    if not _NETNS_NAME.fullmatch(netns) or not (NETNS_DIR / netns).exists():
        raise ValueError(
            f"netns={netns!r} is not a network namespace (none under {NETNS_DIR}); "
            "create it first with `ip netns add`"
        )


class NodeProcess:
    """A running process started by :func:`open_node_process`.

    Its stdout and stderr go to temporary files (no pipes to drain, so a chatty
    process never blocks), read back by :attr:`stdout`/:attr:`stderr`.
    """

    def __init__(
        self, process: trio.Process, argv: Sequence[str], node: str, outputs: dict[str, IO[bytes]]
    ) -> None:
        self.process = process
        self.argv = list(argv)
        self.node = node
        self.timed_out = False
        self._outputs = outputs
        self._final: dict[str, str] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def _read(self, stream: str) -> str:
        if stream not in self._outputs:
            raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
        if stream in self._final:
            return self._final[stream]
        file = self._outputs[stream]
        size = os.fstat(file.fileno()).st_size
        return os.pread(file.fileno(), size, 0).decode(errors="replace")

    @property
    def stdout(self) -> str:
        """Everything the process wrote to stdout so far."""
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self._read("stderr")

    async def send_input(self, text: str) -> None:
        """Write ``text`` to the process's stdin (``stdin=True`` only)."""
        if self.process.stdin is None:
            raise ValueError("the process was started without stdin=True")
        await self.process.stdin.send_all(text.encode())

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        return await self.process.wait()

    async def wait_for_output(
        self, text: str, *, stream: str = "stdout", count: int = 1, poll_interval: float = 0.01
    ) -> None:
        """Wait until ``text`` appears ``count`` times in ``stream`` ("stdout" or
        "stderr").

        Raises :class:`EOFError` if the process exits without writing it.  Bound
        the wait with ``trio.fail_after`` if the test needs a limit tighter than
        the process's ``timeout``.
        """
        while True:
            exited = self.process.poll() is not None
            if self._read(stream).count(text) >= count:
                return
            if exited:
                raise EOFError(
                    f"process exited before {count} x {text!r} on {stream}:\n{self.describe()}"
                )
            await trio.sleep(poll_interval)

    def describe(self) -> str:
        """Command, exit status and the tail of each stream, for error messages."""
        status = "running" if self.returncode is None else f"exit status {self.returncode}"
        return (
            f"node process {self.argv!r} (node {self.node}, {status})\n"
            f"--- stdout (last {_TAIL} chars) ---\n{self.stdout[-_TAIL:]}\n"
            f"--- stderr (last {_TAIL} chars) ---\n{self.stderr[-_TAIL:]}"
        )

    def _keep_output(self) -> None:
        """Keep the output in memory: the temporary files are about to close."""
        self._final = {stream: self._read(stream) for stream in self._outputs}

    def _kill_group(self, sig: signal.Signals) -> None:
        # The process leads its own session (start_new_session=True), so its
        # pid is the process-group id of everything it started.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


@asynccontextmanager
async def open_node_process(
    python_args: Sequence[str],
    *,
    node: str = "127.0.0.1",
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    grace: float = 5.0,
    python: str = sys.executable,
    stdin: bool = False,
    cwd: str | None = None,
) -> AsyncIterator[NodeProcess]:
    """Run ``python *python_args`` as a node process for the ``async with`` block.

    ``python_args`` are the interpreter's arguments, e.g. ``["-c", code]`` or
    ``["-m", "some.module", "--flag"]``.  ``node`` is the address the node must
    use; it is validated (numeric; loopback unless ``netns`` is given) and
    passed as ``TRIOPYCOS_TEST_NODE``.  ``netns`` names a namespace the test
    created with ``ip netns add``; the process then runs via ``ip netns exec``.
    ``env`` is added to the inherited environment.  ``stdin=True`` gives the
    process a pipe for stdin (write with :meth:`NodeProcess.send_input`); otherwise
    it reads ``/dev/null``.  ``cwd``: its working directory.

    When the block ends the process gets SIGTERM, then SIGKILL after ``grace``
    seconds (trio's clock), and so does anything else left in its process
    group.  ``timeout`` seconds (wall clock) after the start, the process group
    is killed, the block is cancelled and :class:`NodeProcessTimeout` raised.
    An exception leaving the block gets the captured output as a note.
    """
    if isinstance(python_args, str):
        raise TypeError('python_args is a sequence of arguments, e.g. ["-c", code]')
    if netns is not None:
        _check_netns(netns)
    _check_node(node, netns)

    argv = [python, *python_args]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    child_env = {**os.environ, **(env or {}), NODE_ENV: node, "PYTHONUNBUFFERED": "1"}

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
        )
        proc = NodeProcess(process, argv, node, {"stdout": out, "stderr": err})
        token = trio.lowlevel.current_trio_token()
        body = trio.CancelScope()

        def on_timeout() -> None:  # in the trio thread
            if process.returncode is None:
                proc.timed_out = True
                proc._kill_group(signal.SIGKILL)
                body.cancel()

        def from_timer() -> None:  # in the timer thread
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(on_timeout)

        # Wall clock, so that a test's mock clock cannot make it fire early or never.
        timer = threading.Timer(timeout, from_timer)
        timer.daemon = True
        timer.start()
        failure: BaseException | None = None
        try:
            with body:
                yield proc
        except BaseException as exc:
            failure = exc
            raise
        finally:
            timer.cancel()
            with trio.CancelScope(shield=True):
                await _stop(proc, grace)
            proc._keep_output()
            if failure is not None:
                failure.add_note(proc.describe())
        if proc.timed_out:
            raise NodeProcessTimeout(f"killed after {timeout} s: {proc.describe()}")


async def _stop(proc: NodeProcess, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the whole process group."""
    if proc.returncode is None:
        proc._kill_group(signal.SIGTERM)
        with trio.move_on_after(grace):
            await proc.wait()
    proc._kill_group(signal.SIGKILL)  # stragglers in the group, and the process itself
    await proc.wait()
