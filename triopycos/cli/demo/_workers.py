"""The demo's worker processes (beta and gamma): starting them, stopping them, and
making sure none outlives the demo, whatever ends it (success, a failed step, a
time-out, Ctrl-C).

* Each worker runs in its own session, so a Ctrl-C in the terminal reaches only the
  demo, which then stops the workers itself, in order.
* A worker's standard input is a pipe from the demo.  Closing it asks the worker to
  leave (with a goodbye to its peers); if the demo is killed outright, the system
  closes it, and the worker leaves by itself.
* A worker that exits when the demo did not ask it to fails the demo at once
  (``WorkerDied``), with the end of its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ...values import Location
from ._worker import SECRET_ENV

__all__ = ["Worker", "WorkerDied", "Workers", "open_workers"]

#: How long a worker may take to leave once asked, before it is killed.
STOP_GRACE = 5.0
_LOG_TAIL = 2000  # characters of a worker's log shown when it fails
#: The folder holding this very triopycos package: workers import it from there,
#: whether it is installed or run from a source tree.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class Worker:
    """One worker process."""

    def __init__(self, role: str, process: trio.Process, log: Path) -> None:
        self.role = role
        self.process = process
        self.log = log
        self.stopping = False  # the demo asked it to end (or killed it)
        self.location: Location | None = None  # once it reports ready

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL:].strip()


class WorkerDied(Exception):
    """A worker exited though the demo did not ask it to."""

    def __init__(self, worker: Worker, code: int) -> None:
        tail = worker.log_tail()
        super().__init__(
            f"{worker.role} (pid {worker.pid}) exited unexpectedly with status {code}"
            + (f"; its log ends:\n{tail}" if tail else "")
        )


class Workers:
    def __init__(
        self, nursery: trio.Nursery, folder: Path, secret: str, director_port: int, lifetime: float
    ) -> None:
        self._nursery = nursery
        self._folder = folder
        self._secret = secret
        self._director_port = director_port
        self._lifetime = lifetime
        self.running: list[Worker] = []

    async def start(
        self, role: str, *, peers: Sequence[int] = (), dest_path: Path | None = None
    ) -> Worker:
        argv = [
            sys.executable,
            "-m",
            "triopycos.cli.demo._worker",
            role,
            str(self._director_port),
            "--lifetime",
            str(self._lifetime),
        ]
        for port in peers:
            argv += ["--peer", str(port)]
        if dest_path is not None:
            argv += ["--dest-path", str(dest_path)]
        log = self._folder / f"{role}.log"
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, SECRET_ENV: self._secret, "PYTHONPATH": path}
        with log.open("wb") as out:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        worker = Worker(role, process, log)
        self.running.append(worker)
        self._nursery.start_soon(self._watch, worker)
        return worker

    async def _watch(self, worker: Worker) -> None:
        code = await worker.process.wait()
        if not worker.stopping:
            raise WorkerDied(worker, code)

    def kill(self, worker: Worker) -> None:
        """SIGKILL: the worker gets no chance to say goodbye."""
        worker.stopping = True
        worker.process.kill()

    async def stop(self, worker: Worker) -> int:
        """Ask the worker to leave (close its stdin); kill it if it has not left
        after ``STOP_GRACE`` seconds.  Its exit status (negative: killed)."""
        worker.stopping = True
        if worker.process.stdin is not None:
            await worker.process.stdin.aclose()
        with trio.move_on_after(STOP_GRACE):
            return await worker.process.wait()
        worker.process.kill()
        return await worker.process.wait()

    async def stop_all(self) -> None:
        for worker in self.running:
            if worker.process.returncode is None:
                await self.stop(worker)
            else:
                worker.stopping = True
                await worker.process.wait()  # reaped, in every case


@asynccontextmanager
async def open_workers(
    folder: Path, secret: str, director_port: int, lifetime: float
) -> AsyncIterator[Workers]:
    async with trio.open_nursery() as nursery:
        workers = Workers(nursery, folder, secret, director_port, lifetime)
        try:
            yield workers
        finally:
            # Whatever ended the demo: every worker is asked to leave, killed if it
            # does not, and reaped before the demo goes on.
            with trio.CancelScope(shield=True):
                await workers.stop_all()
            nursery.cancel_scope.cancel()
