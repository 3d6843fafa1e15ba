"""pycos's ``Pycos``: one scheduler per process, running in a background thread.

A pycos script's main thread is plain Python (it calls ``input()``, creates tasks,
waits with ``task.value()``); its tasks run in the scheduler.  Here the scheduler is a
triopycos node run by ``trio.run`` in a daemon thread; every call from the script's
threads goes to that node's thread (see ``triopycos/_threads.py``).

Lifetime, as in pycos: the first ``Pycos(...)`` (or the first task created without
one) starts it; ``finish()`` waits for every non-daemon task and then stops it;
``terminate()`` stops it at once; at interpreter exit it finishes.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import logging
import os
import platform
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import trio

from .. import _node
from .._context import current_node_var
from .._node_config import NodeConfig
from .._node_open import open_node
from .._task import Task
from ..values import Location, PycosError
from . import _failures
from ._logger import logger

__all__ = ["Pycos", "network_defaults"]

__version__ = "4.12.2"  # the pycos version whose behaviour this follows

log = logging.getLogger("triopycos.compat")

# Before ``import pycos.netpycos`` the scheduler is local only (pycos's ``Pycos``);
# after it, a networked node with the spec's defaults (netpycos's).
network_defaults: dict[str, Any] | None = None
_LOCAL_ONLY: dict[str, Any] = {"node": "127.0.0.1", "tcp_port": 0, "discover_peers": False}
#: pycos's ``Pycos(...)`` parameters, in its order: ``open_pycos``'s, with
#: ``notifier`` (pycos's I/O poller: trio has its own) between ``keyfile`` and
#: ``dest_path``.
_PYCOS_PARAMETERS = (
    "udp_port",
    "tcp_port",
    "node",
    "ext_ip_addr",
    "socket_family",
    "ipv4_udp_multicast",
    "name",
    "discover_peers",
    "secret",
    "certfile",
    "keyfile",
    "notifier",
    "dest_path",
    "max_file_size",
)


class _Runner:
    """A node in a background thread, reached through its trio token."""

    def __init__(self, config: NodeConfig) -> None:
        self.node: _node.Pycos | None = None
        self._config = config
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="triopycos scheduler", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the thread that started us
            if not self._ready.is_set():
                self._error = exc
            else:
                log.error("the triopycos scheduler failed", exc_info=True)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with open_node(self._config) as node:
            self.node = node
            self._stop = trio.Event()
            _log_start(node)
            self._ready.set()
            await self._stop.wait()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_tasks(self, timeout: float | None) -> bool:
        """Wait for every non-daemon task: True, or False if ``timeout`` passed."""
        if self.here:
            raise PycosError("join() waits for tasks: call it from the main program")
        node = self.node
        if node is None or not self.alive:
            return True

        async def finished() -> bool:
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await node.finish()
                return True
            return False

        try:
            return node._thread.wait(finished)
        except PycosError:  # already stopped
            return True

    @property
    def here(self) -> bool:
        """Whether the caller runs in the scheduler's thread (inside a task)."""
        return threading.current_thread() is self._thread

    def stop(self, *, now: bool) -> None:
        """End the node (cancelling every task if ``now``) and its thread.  From a
        task it only starts that: the thread cannot wait for its own end."""
        node, stop = self.node, self._stop
        if node is not None and stop is not None and self.alive:
            action = node.terminate if now else stop.set
            if self.here:
                action()
                return
            with contextlib.suppress(PycosError):  # it stopped meanwhile
                node._thread.call(action)
        self._thread.join()


def _config(*args: Any, **kwargs: Any) -> NodeConfig:
    """The node's configuration for the spec's ``Pycos(...)`` arguments, built as
    ``open_pycos`` builds it (``NodeConfig.build``: the same checks, the same
    errors).  A local-only scheduler (no ``pycos.netpycos``) takes only ``name``."""
    if len(args) > len(_PYCOS_PARAMETERS):
        raise TypeError(
            f"Pycos() takes at most {len(_PYCOS_PARAMETERS)} positional arguments "
            f"({len(args)} given)"
        )
    spec = dict(zip(_PYCOS_PARAMETERS, args, strict=False))
    for key, value in kwargs.items():
        if key in spec:
            raise TypeError(f"Pycos() got multiple values for argument {key!r}")
        if key in _PYCOS_PARAMETERS:
            spec[key] = value
    extra = {key: value for key, value in kwargs.items() if key not in _PYCOS_PARAMETERS}
    spec.pop("notifier", None)
    if network_defaults is None:
        return NodeConfig.build(**_LOCAL_ONLY, name=spec.get("name"))
    return NodeConfig.build(**{**spec, **network_defaults, **extra})


def _log_start(node: _node.Pycos) -> None:
    """The lines pycos's scheduler logs when it starts (same shape, our values)."""
    logger.info(
        "version %s (Python %s) with trio I/O notifier", __version__, platform.python_version()
    )
    if network_defaults is not None:
        for location in node._locations():
            logger.info('TCP server "%s" @ %s', node.name, location)
        if node.discover_peers:
            logger.info("UDP server @ %s:%s", "0.0.0.0", node.udp_port)


class Pycos:
    """pycos's scheduler: ``Pycos(...)`` (the spec's arguments) starts it, or returns
    the one already running, as pycos's singleton does.  Coroutine methods
    (``locate``, ``peer``, ``send_file``...) are used with ``yield`` inside tasks."""

    _instance: ClassVar[Pycos | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _runner: _Runner
    _dest_root: str
    _atexit: list[tuple[int, Callable[..., Any], tuple[Any, ...], dict[str, Any]]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Pycos:
        # The scheduler starts under the lock: two threads creating the first task at
        # once get the same one, fully started.
        with Pycos._lock:
            current = Pycos._instance
            if current is not None and current._runner.alive:
                return current
            self = super().__new__(cls)
            self._atexit = []
            _failures.install()
            self._runner = _Runner(_config(*args, **kwargs))
            # pycos creates its dest_path at start (programs make folders in it).
            self._dest_root = self.node.dest_path
            os.makedirs(self._dest_root, exist_ok=True)
            Pycos._instance = self
        atexit.register(self._at_exit)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # pycos: the running scheduler, whatever the arguments (see __new__)

    # -- the scheduler ------------------------------------------------------------

    @classmethod
    def instance(cls, *args: Any, **kwargs: Any) -> Pycos:
        """The running scheduler, started (with these arguments) if there is none."""
        return cls(*args, **kwargs)

    @staticmethod
    def scheduler() -> Pycos | None:
        return Pycos._instance

    @property
    def node(self) -> _node.Pycos:
        """The triopycos node behind this scheduler."""
        node = self._runner.node
        if node is None:
            raise PycosError("the scheduler is not running")
        return node

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def location(self) -> Location:
        return self.node.location

    @property
    def locations(self) -> list[Location]:
        return self.node._locations()

    @staticmethod
    def cur_task(scheduler: Pycos | None = None) -> Task | None:
        """The task running now (None outside tasks)."""
        try:
            me = trio.lowlevel.current_task()
        except RuntimeError:
            return None
        current = current_node_var.get()
        if current is None:
            return None
        return next((t for t in current._tasks.values() if t._trio_task is me), None)

    def is_alive(self) -> bool:
        return self._runner.alive

    def join(self, show_running: bool = False, timeout: float | None = None) -> bool:
        """Wait for the non-daemon tasks; the scheduler keeps running.  True, or
        False if ``timeout`` passed."""
        if show_running:
            for task in list(self.node._tasks.values()):
                log.info("waiting for %s%s", task, " (daemon)" if task._daemon else "")
        return self._runner.wait_tasks(timeout)

    def finish(self) -> None:
        """Wait for every non-daemon task, then stop.  From a task: stop once the
        non-daemon tasks have ended (a task cannot wait for itself)."""
        if not self._runner.here:
            self._runner.wait_tasks(None)
        self._shutdown(now=False)

    def terminate(self) -> None:
        """Stop now: every task is cancelled."""
        self._shutdown(now=True)

    def atexit(self, priority: int, func: Callable[..., Any], *fargs: Any, **fkwargs: Any) -> None:
        """Call ``func(*fargs, **fkwargs)`` once the scheduler has stopped; higher
        ``priority`` first."""
        bisect.insort(self._atexit, (priority, func, fargs, fkwargs), key=lambda item: item[0])

    def drop_atexit(self, priority: int, func: Callable[..., Any]) -> None:
        """Forget every ``atexit`` entry of ``func`` at ``priority``."""
        self._atexit = [e for e in self._atexit if (e[0], e[1]) != (priority, func)]

    def _shutdown(self, *, now: bool) -> None:
        self._runner.stop(now=now)
        if self._runner.here:
            return  # the atexit functions run when the main program finishes
        self._run_atexit()

    def _run_atexit(self) -> None:
        while self._atexit:
            _, func, fargs, fkwargs = self._atexit.pop()
            try:
                func(*fargs, **fkwargs)
            except Exception:
                log.warning("atexit function %r failed", func, exc_info=True)
        with Pycos._lock:
            if Pycos._instance is self:
                Pycos._instance = None

    def _at_exit(self) -> None:
        if self._runner.alive:
            self.finish()
        else:
            self._run_atexit()

    # -- network (netpycos) ---------------------------------------------------------

    def peers(self) -> list[Location]:
        peers: list[Location] = self._in_node(self.node.peers)
        return peers

    def peer_status(self, task: Task | None) -> None:
        self._in_node(self.node.peer_status, task)

    def locate(self, name: str, timeout: float | None = None) -> Awaitable[Location | None]:
        return self.node.locate(name, timeout)

    def peer(
        self,
        loc: Location | str,
        udp_port: int = 9705,
        stream_send: bool = False,
        relay: bool = False,
    ) -> Awaitable[int]:
        return self.node.peer(loc, udp_port, stream_send, relay)

    def close_peer(self, location: Location, timeout: float | None = None) -> Awaitable[int]:
        return self.node.close_peer(location, timeout)

    def send_file(self, location: Location, file: str, **kwargs: Any) -> Awaitable[Any]:
        return self.node.send_file(location, file, **kwargs)

    def del_file(self, location: Location, file: str, **kwargs: Any) -> Awaitable[int]:
        return self.node.del_file(location, file, **kwargs)

    @property
    def dest_path(self) -> str:
        """Where files sent to this node are saved.  Settable, as in pycos: a path
        outside the first one is taken as inside it; the folder is created."""
        return self.node.dest_path

    @dest_path.setter
    def dest_path(self, path: str) -> None:
        node = self.node
        self._in_node(setattr, node, "dest_path", _dest_folder(self._dest_root, path))

    def _in_node(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.node._thread.run(fn, *args)


def _dest_folder(root: str, path: str) -> str:
    """pycos's rule for a new dest_path: under ``root`` (the first one) unless it
    already is; created if missing."""
    path = os.path.normpath(path)
    if not path.startswith(root):
        path = os.path.join(root, os.path.splitdrive(path)[1].lstrip(os.sep))
    os.makedirs(path, exist_ok=True)
    return path


def _default_node() -> _node.Pycos:
    """The node a pycos call outside any task means: the scheduler, started now
    with the defaults if the script did not start one."""
    return Pycos.instance().node
