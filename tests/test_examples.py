"""The network examples (examples/*.py), run as the separate processes they are.

Every example runs through tests/procs.py (loopback only, bounded in time) with
``--node`` set to the node address given to ``open_node_process`` and servers on
``--port 0``.  The tests wait for the lines the examples print (a server prints
``ready HOST PORT`` once serving), never for a fixed time, and check exit codes.
"""

from __future__ import annotations

import ast
import contextlib
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from procs import NodeProcess, open_node_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NODE = "127.0.0.1"
SECRET = "examples-test-secret"
LIMIT = 15  # seconds any one test may take
#: The network examples, each a pair of commands for two terminals (or two watchers).
NETWORK_EXAMPLES = [
    "remote_task_server.py",
    "remote_task_client.py",
    "channel_server.py",
    "channel_client.py",
    "rps_server.py",
    "rps_client.py",
    "peer_watcher.py",
    "file_receiver.py",
    "file_sender.py",
    "supervised_worker.py",
    "supervised_service.py",
]


@contextlib.asynccontextmanager
async def example(script: str, *args: str, node: str = NODE) -> AsyncIterator[NodeProcess]:
    """``examples/script`` running with ``--node node`` and the tests' secret."""
    argv = [str(EXAMPLES / script), "--node", node, "--secret", SECRET, *args]
    async with open_node_process(argv, node=node, timeout=LIMIT) as proc:
        yield proc


@contextlib.asynccontextmanager
async def server(
    script: str, *args: str, node: str = NODE
) -> AsyncIterator[tuple[NodeProcess, str]]:
    """A server example on a free port, once it serves; and its ``HOST:PORT``."""
    async with example(script, "--port", "0", *args, node=node) as proc:
        await proc.wait_for_output("ready ")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ready "))
        _, host, port = line.split()
        yield proc, (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


async def client(script: str, peer: str, *args: str, status: int = 0, node: str = NODE) -> str:
    """Run a client example against ``peer`` to its end; its output."""
    async with example(script, "--peer", peer, *args, node=node) as proc:
        assert await proc.wait() == status, proc.describe()
    return proc.stdout


def lines(text: str) -> list[str]:
    return text.splitlines()


async def test_remote_task_server_and_client() -> None:
    with trio.fail_after(LIMIT):
        async with server("remote_task_server.py") as (srv, where):
            out = await client("remote_task_client.py", where, "--count", "3")
            assert lines(out) == [
                f"peered with {where}",
                f"located task_server at {where}",
                "deliver 1: 1",
                "ack 1: 'HELLO 1'",
                "deliver 2: 1",
                "ack 2: 'HELLO 2'",
                "deliver 3: 1",
                "ack 3: 'HELLO 3'",
            ]

            out = await client("remote_task_client.py", where, "--secret", "wrong", status=1)
            assert f"could not peer with {where}" in out

            out = await client("remote_task_client.py", where, "--count", "2", "--stop")
            assert lines(out)[-3:] == ["deliver 2: 1", "ack 2: 'HELLO 2'", "task_server returned 5"]

            assert await srv.wait() == 0, srv.describe()
            requests = [ln for ln in lines(srv.stdout) if ln.startswith("request ")]
            assert [ln.split(" from ")[0] for ln in requests] == [
                "request 1 'hello 1'",
                "request 2 'hello 2'",
                "request 3 'hello 3'",
                "request 1 'hello 1'",
                "request 2 'hello 2'",
            ]
            assert lines(srv.stdout)[-2:] == ["task_server handled 5 requests", "server stopped"]
            assert "authentication failed" in srv.stderr


async def test_channel_server_and_client() -> None:
    with trio.fail_after(LIMIT):
        async with server("channel_server.py") as (srv, where):
            out = await client("channel_client.py", where, "--count", "2")
            assert lines(out) == [
                f"peered with {where}",
                "subscribed to news",
                "published 'bulletin 1' to 2 subscribers",
                "received 'bulletin 1'",
                "published 'bulletin 2' to 2 subscribers",
                "received 'bulletin 2'",
                "unsubscribed from news",
                "published 'after unsubscribing' to 1 subscribers",
            ]

            out = await client("channel_client.py", where, "--count", "1", "--stop")
            assert lines(out)[-1] == "published 'stop' to 1 subscribers"

            assert await srv.wait() == 0, srv.describe()
            assert lines(srv.stdout)[1:] == [
                "news: 'bulletin 1'",
                "news: 'bulletin 2'",
                "news: 'after unsubscribing'",
                "news: 'bulletin 1'",
                "news: 'after unsubscribing'",
                "logger saw 5 messages",
                "server stopped",
            ]


async def test_rps_server_and_client() -> None:
    with trio.fail_after(LIMIT):
        async with server("rps_server.py") as (srv, where):
            out = await client("rps_client.py", where, "5", "20", "-3", "0", "--stop")
            assert lines(out) == [
                f"peered with {where}",
                "located RPS factorial",
                "factorial(5) = 120",
                "factorial(20) = 2432902008176640000",
                "factorial(-3) failed: raised ValueError: factorial needs an int >= 0, not -3",
                "factorial(0) = 1",
                "shutdown returned 'rps-server is shutting down'",
            ]
            assert await srv.wait() == 0, srv.describe()
            assert sorted(ln for ln in lines(srv.stdout) if ln.startswith("factorial(")) == [
                "factorial(-3) called",
                "factorial(0) called",
                "factorial(20) called",
                "factorial(5) called",
            ]
            assert lines(srv.stdout)[-2:] == ["shutdown called", "server stopped"]
            assert "ValueError: factorial needs an int >= 0, not -3" in srv.stderr


async def test_peer_watcher_sees_nodes_come_and_go() -> None:
    seen: list[str] = []
    with trio.fail_after(LIMIT):
        async with server("peer_watcher.py", "--name", "first") as (first, where):
            for name in ("second", "third"):
                async with server("peer_watcher.py", "--name", name, "--peer", where) as (
                    other,
                    other_where,
                ):
                    await other.wait_for_output(f"online first {where}\n")
                    await first.wait_for_output(f"online {name} {other_where}\n")
                    other.process.terminate()  # SIGTERM: it leaves, saying goodbye
                    assert await other.wait() == 0, other.describe()
                    assert lines(other.stdout)[-2:] == ["stopping on SIGTERM", "watcher stopped"]
                await first.wait_for_output(f"offline {name} {other_where}\n")
                seen += [f"online {name} {other_where}", f"offline {name} {other_where}"]
            first.process.send_signal(signal.SIGINT)  # Ctrl-C
            assert await first.wait() == 0, first.describe()
            assert lines(first.stdout) == [
                f"ready {where.replace(':', ' ')}",
                *seen,
                "stopping on SIGINT",
                "watcher stopped",
            ]


async def test_file_sender_and_receiver(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "received"
    source.mkdir()
    a, b = source / "a.txt", source / "b.txt"
    a.write_text("alpha\n")
    b.write_text("bravo\n")
    with trio.fail_after(LIMIT):
        async with server("file_receiver.py", "--dest", str(dest)) as (srv, where):
            out = await client("file_sender.py", where, "--dir", "demo/1", str(a), str(b))
            assert lines(out)[1:] == ["send_file a.txt: 0 (sent)", "send_file b.txt: 0 (sent)"]
            assert (dest / "demo" / "1" / "a.txt").read_text() == "alpha\n"
            assert (dest / "demo" / "1" / "b.txt").read_text() == "bravo\n"

            b.write_text("bravo, changed\n")
            missing = str(source / "missing.txt")
            args = ["--dir", "demo/1", str(a), str(b), missing]
            out = await client("file_sender.py", where, *args, status=1)
            assert lines(out)[1:] == [
                "send_file a.txt: 1 (the same file is there already)",
                "send_file b.txt: os.stat_result (a different 6-byte file is there; "
                "--overwrite replaces it)",
                "send_file missing.txt: -1 (failed)",
            ]
            assert (dest / "demo" / "1" / "b.txt").read_text() == "bravo\n"

            args = ["--dir", "demo/1", "--overwrite", "--delete", "a.txt", "--stop", str(b)]
            out = await client("file_sender.py", where, *args)
            assert lines(out)[1:] == [
                "send_file b.txt: 0 (sent)",
                "del_file a.txt: 0",
                "asked the receiver to stop",
            ]

            assert await srv.wait() == 0, srv.describe()
            assert lines(srv.stdout)[-3:] == [
                "files received: 3",
                "kept demo/1/b.txt (15 bytes)",
                "receiver stopped",
            ]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "demo",
        "demo/1",
        "demo/1/b.txt",
    ]
    assert (dest / "demo" / "1" / "b.txt").read_text() == "bravo, changed\n"


async def test_supervised_service_survives_its_workers_node_killed() -> None:
    """The supervisor's child runs on one worker; that worker is killed (SIGKILL, no
    goodbye): the child is started again on the other worker, and every number is
    answered, in order, none skipped."""
    with trio.fail_after(LIMIT):
        async with (
            server("supervised_worker.py") as (first, first_at),
            server("supervised_worker.py") as (second, second_at),
        ):
            workers = {first_at: first, second_at: second}
            args = ["--peer", first_at, "--peer", second_at, "--interval", "0.05"]
            async with example("supervised_service.py", *args, "--deadline", "12") as svc:
                await svc.wait_for_output("squarer runs at ")
                await svc.wait_for_output(" = ", count=3)
                home = lines(svc.stdout)[0].removeprefix("squarer runs at ")
                killed = workers.pop(home)
                killed.process.kill()
                assert await svc.wait() == 0, svc.describe()
            (survivor_at,) = workers
            out = lines(svc.stdout)
            moved = out.index(f"squarer runs at {survivor_at}")
            assert out[0] == f"squarer runs at {home}" and moved > 3
            answers = [ln for ln in out if " = " in ln]
            assert answers == [
                f"{n}^2 = {n * n} (from {home if n < moved else survivor_at})"
                for n in range(1, len(answers) + 1)
            ]
            assert len(answers) - (moved - 1) == 3  # --count answers after the move
            assert lines(killed.stdout)[1:] == ["squarer started"]
            assert lines(workers[survivor_at].stdout)[1:] == ["squarer started"]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
async def test_examples_on_ipv6_loopback() -> None:
    with trio.fail_after(LIMIT):
        async with server("remote_task_server.py", node="::1") as (srv, where):
            assert where.startswith("[::1]:")
            args = ["--count", "1", "--stop"]
            out = await client("remote_task_client.py", where, *args, node="::1")
            assert lines(out)[-2:] == ["ack 1: 'HELLO 1'", "task_server returned 1"]
            assert await srv.wait() == 0, srv.describe()


async def test_every_example_documents_its_commands_and_options() -> None:
    """Each docstring shows the commands to run; each ``--help`` works."""
    for script in NETWORK_EXAMPLES:
        doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text()))
        terminals = re.search(r"Run, in (two|three) terminals", doc or "")
        assert doc is not None and terminals is not None, script
        commands = [ln.strip() for ln in doc.splitlines() if ln.startswith("    python examples/")]
        wanted = {"two": 2, "three": 3}[terminals[1]]
        assert len(commands) == wanted, script
        assert any(f"examples/{script}" in c for c in commands), script

    helps: dict[str, str] = {}

    async def show_help(script: str) -> None:
        async with example(script, "--help") as proc:
            assert await proc.wait() == 0, proc.describe()
        helps[script] = proc.stdout

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            for script in NETWORK_EXAMPLES:
                nursery.start_soon(show_help, script)
    for script, text in helps.items():
        assert "--node ADDRESS" in text and "--secret" in text, script
        assert ("--port" in text) or ("--peer HOST:PORT" in text), script


HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello_tasks.py"


async def test_hello_tasks_runs_on_its_own() -> None:
    # The one example without a network: two local tasks, native and generator.
    async with open_node_process([str(HELLO)], timeout=30) as proc:
        with trio.fail_after(30):
            assert await proc.wait() == 0, proc.describe()
    assert proc.stdout.strip() and proc.stderr == "", proc.describe()
