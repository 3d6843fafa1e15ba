"""Remote tasks across real processes on loopback (IPv4 and IPv6).

Each node process is started through tests/procs.py (loopback only, bounded in time).
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from procs import NodeProcess, open_node_process

from triopycos import Location, MonitorStatus, PeerLost, PeerStatus, Task, open_pycos

PROGRAM = str(Path(__file__).with_name("node_program.py"))
SECRET = "process-secret"
LIMIT = 30


@contextlib.asynccontextmanager
async def node_process(
    name: str,
    *,
    node: str = "127.0.0.1",
    secret: str = SECRET,
    port: int = 0,
    tls: dict[str, str] | None = None,
) -> AsyncIterator[tuple[NodeProcess, Location]]:
    certs = [] if tls is None else [tls["certfile"], tls["keyfile"], tls["cafile"]]
    async with open_node_process([PROGRAM, name, secret, str(port), *certs], node=node) as proc:
        with trio.fail_after(LIMIT):
            await proc.wait_for_output("ready ")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ready "))
        _, host, port_text = line.split()
        yield proc, Location(host, int(port_text))


def local_node(name: str, node: str = "127.0.0.1", **kwargs: Any) -> Any:
    args: dict[str, Any] = {"name": name, "node": node, "tcp_port": 0, "discover_peers": False}
    return open_pycos(**(args | {"secret": SECRET} | kwargs))


async def locate_both(location: Location) -> tuple[Task, Task]:
    server = await Task.locate("server_task", location, timeout=10)
    sleeper = await Task.locate("sleeper", location, timeout=10)
    assert server is not None and sleeper is not None
    return server, sleeper


async def test_task_operations_across_processes() -> None:
    with trio.fail_after(LIMIT):
        async with node_process("remote") as (proc, where), local_node("here") as here:
            assert await here.peer(where) == 0
            assert await here.locate("remote", timeout=5) == where

            async def client(task: Task) -> dict[str, Any]:
                server, sleeper = await locate_both(where)
                out: dict[str, Any] = {}
                out["send"] = server.send("one")
                out["deliver"] = await server.deliver({"two": 2}, timeout=5)
                server.send(("echo", task, "echoed"))
                out["echo"] = await task.receive(timeout=5)
                server.send(None)
                out["finish"] = await server.finish(timeout=5)
                # The sleeper keeps that node alive; ending it lets the process leave.
                assert await task.monitor(sleeper) == 0
                assert sleeper.terminate() == 0
                out["terminated"] = await task.receive(timeout=5)
                return out

            out = await here.spawn(client).finish()
            assert out["send"] == 0 and out["deliver"] == 1 and out["echo"] == "echoed"
            assert out["terminated"].type is GeneratorExit
            assert out["finish"] == ["one", {"two": 2}]
            # Both of its tasks have ended: the process leaves, saying goodbye.
            assert await proc.wait() == 0


async def test_remote_exception_reaches_monitor() -> None:
    with trio.fail_after(LIMIT):
        async with node_process("failing") as (_, where), local_node("here") as here:
            assert await here.peer(where) == 0

            async def client(task: Task) -> MonitorStatus:
                server, sleeper = await locate_both(where)
                assert await task.monitor(server) == 0
                server.send("raise")
                status = await task.receive(timeout=5)
                sleeper.terminate()
                assert isinstance(status, MonitorStatus)
                return status

            status = await here.spawn(client).finish()
            assert status.type is ValueError
            assert "ValueError: asked to fail" in status.value


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_kill_9_fires_monitors_and_offline_at_once(
    tls: bool, cluster_certificates: dict[str, str]
) -> None:
    # With TLS the killed process says no close_notify: the truncation is the loss.
    certs = cluster_certificates if tls else None
    with trio.fail_after(LIMIT):
        async with (
            node_process("victim", tls=certs) as (proc, where),
            local_node("here", **(certs or {})) as here,
        ):
            seen: list[Any] = []
            offline = trio.Event()

            async def watch(task: Task) -> None:
                task.set_daemon()
                while True:
                    note = await task.receive()
                    seen.append(note)
                    if isinstance(note, PeerStatus) and note.status == PeerStatus.Offline:
                        offline.set()

            here.peer_status(here.spawn(watch))
            assert await here.peer(where) == 0

            async def client(task: Task) -> tuple[Any, Any]:
                server, _ = await locate_both(where)
                assert await task.monitor(server) == 0
                assert await server.deliver("before", timeout=5) == 1
                pending: Any = "not ended"
                async with trio.open_nursery() as nursery:

                    async def finish() -> None:
                        nonlocal pending
                        pending = await server.finish()  # only the loss can end this

                    nursery.start_soon(finish)
                    await trio.sleep(0.2)
                    proc._kill_group(signal.SIGKILL)
                return await task.receive(timeout=5), pending

            start = trio.current_time()
            status, pending = await here.spawn(client).finish()
            with trio.fail_after(2):
                await offline.wait()
            assert trio.current_time() - start < 5
            assert pending is None
            assert status.type is PeerLost
            assert here.peers() == []
            assert [type(n) for n in seen] == [PeerStatus, PeerStatus]


async def test_wrong_secret_process_is_refused() -> None:
    with trio.fail_after(LIMIT):
        async with (
            node_process("stranger", secret="not the same") as (proc, where),
            local_node("here") as here,
        ):
            assert await here.peer(where) == -1
            assert here.peers() == []
            with trio.fail_after(5):
                await proc.wait_for_output("authentication failed", stream="stderr")


async def test_restarted_peer_makes_old_references_stale() -> None:
    with trio.fail_after(LIMIT):
        async with local_node("here") as here:
            async with node_process("first") as (proc, where):
                assert await here.peer(where) == 0
                old, _ = await locate_both(where)
                assert await old.deliver("hello", timeout=5) == 1
                proc._kill_group(signal.SIGKILL)
                await proc.wait()
            async with node_process("again", port=where.port) as (_, again):
                assert again == where
                assert await here.peer(again) == 0
                new, sleeper = await locate_both(again)
                assert new != old
                assert old.send("stale") == -1
                assert await old.deliver("stale", timeout=2) == 0
                assert await new.deliver("fresh", timeout=5) == 1
                new.send(None)
                assert await new.finish(timeout=5) == ["fresh"]
                sleeper.terminate()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
async def test_ipv6_loopback_process() -> None:
    with trio.fail_after(LIMIT):
        async with node_process("six", node="::1") as (_, where), local_node("here", "::1") as h:
            assert where.addr == "::1"
            assert await h.peer(where) == 0
            server, sleeper = await locate_both(where)
            assert await server.deliver("over ipv6", timeout=5) == 1
            server.send(None)
            assert await server.finish(timeout=5) == ["over ipv6"]
            sleeper.terminate()
