"""pycos 4.12.2's own example programs, as installed from PyPI and not edited, run
under ``python -m triopycos.compat`` as server and client in two network namespaces
(so their default broadcast discovery works), with the servers' prompts answered on
stdin.  What they print is checked against what the programs print by their own
logic (times and ids aside).

Root only (network namespaces); CI runs as root.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from netns import NetnsHost, needs_netns, open_lan
from procs import NodeProcess, open_node_process

pytestmark = [pytest.mark.netns, needs_netns]

_spec = importlib.util.find_spec("pycos")  # found, not imported
EXAMPLES = Path(_spec.origin).parent / "examples" if _spec and _spec.origin else Path("-")
WAIT = 60  # seconds, generous: the programs themselves sleep up to ~10 s


def example(name: str) -> str:
    path = EXAMPLES / name
    assert path.is_file(), f"pycos 4.12.2's examples are needed (pip install pycos): {path}"
    return str(path)


@asynccontextmanager
async def compat_program(
    host: NetnsHost, script: str, *args: str, cwd: Path
) -> AsyncIterator[NodeProcess]:
    """``python -m triopycos.compat SCRIPT ARGS`` inside ``host``'s namespace."""
    async with open_node_process(
        ["-m", "triopycos.compat", example(script), *args],
        node=host.ipv4,
        netns=host.netns,
        stdin=True,
        cwd=str(cwd),
        timeout=WAIT + 30,
    ) as proc:
        yield proc


async def run_pair(
    server: str, client: str, tmp_path: Path, client_args: Sequence[str] = ()
) -> tuple[NodeProcess, NodeProcess, NetnsHost, NetnsHost]:
    """Server in one namespace, client in the other; the client runs to its end, then
    the server is told "quit" at its prompt and must exit 0."""
    async with open_lan(2) as lan:
        h1, h2 = lan.hosts
        async with compat_program(h1, server, cwd=tmp_path) as srv:
            with trio.fail_after(WAIT):
                await srv.wait_for_output("Enter")  # its prompt: it is serving
            async with compat_program(h2, client, *client_args, cwd=tmp_path) as cli:
                with trio.fail_after(WAIT):
                    assert await cli.wait() == 0, cli.describe()
            await srv.send_input("quit\n")
            with trio.fail_after(WAIT):
                assert await srv.wait() == 0, srv.describe()
        return srv, cli, h1, h2


def lines(proc: NodeProcess) -> list[str]:
    # The prompt has no newline: the first line printed after it shares its line.
    text = re.sub(r'Enter "quit" or "exit" to terminate[^:]*: ', "", proc.stdout)
    return [line for line in text.splitlines() if line.strip()]


def log_messages(proc: NodeProcess) -> list[str]:
    """pycos logger lines ("YYYY-mm-dd HH:MM:SS pycos - message"), messages only."""
    found = []
    for line in lines(proc):
        match = re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d pycos - (.*)", line)
        if match:
            found.append(match.group(1))
    return found


async def test_remote_task_server_and_client(tmp_path: Path) -> None:
    srv, cli, _, _ = await run_pair("remote_task_server.py", "remote_task_client.py", tmp_path)
    # 10 client tasks send 3 messages each: msg_id 1..30, one per (client, msg).
    processing = re.compile(r"processing msg_id (\d+): client (\d), msg (\d)")
    done = re.compile(r"  done with msg_id (\d+): client (\d), msg (\d)")
    out = [line for line in lines(srv) if "pycos - " not in line]
    started = [processing.fullmatch(line) for line in out if line.startswith("processing")]
    finished = [done.fullmatch(line) for line in out if line.startswith("  done")]
    assert len(started) == len(finished) == 30, srv.stdout
    assert len(out) == 60, srv.stdout
    for group in (started, finished):
        assert all(m is not None for m in group)
        assert sorted(int(m.group(1)) for m in group if m) == list(range(1, 31))
        pairs = {(int(m.group(2)), int(m.group(3))) for m in group if m}
        assert pairs == {(c, n) for c in range(10) for n in range(3)}
    assert [line for line in lines(cli) if "pycos - " not in line] == []


async def test_rps_pico_service_and_client(tmp_path: Path) -> None:
    srv, cli, h1, _ = await run_pair("rps_pico_service.py", "rps_pico_client.py", tmp_path)
    messages = log_messages(cli)
    assert f"pico service RPS is at {h1.ipv4}:9705" in messages, cli.stdout
    tasks = [m for m in messages if m.startswith("service task: ")]
    results = [m for m in messages if m.startswith("result: ")]
    assert len(tasks) == 5 and len(results) == 5, cli.stdout
    for line in tasks:
        assert re.fullmatch(rf"service task: pico_service/\d+@{re.escape(h1.ipv4)}:9705", line)
    for line in results:
        # time.asctime() from the service, and the service task that computed it.
        assert re.fullmatch(
            rf"result: \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}, "
            rf"from: pico_service/\d+@{re.escape(h1.ipv4)}:9705",
            line,
        ), line
    assert not [m for m in messages if "failed" in m or "invalid" in m]
    assert [line for line in lines(srv) if "pycos - " not in line] == []


async def test_remote_channel_server_and_client(tmp_path: Path) -> None:
    srv, cli, h1, h2 = await run_pair(
        "remote_channel_server.py", "remote_channel_client.py", tmp_path
    )
    sent = [f"message {i}" for i in range(10)] + ["None"]
    received = [f'Received "{text}" from sender_proc at {h2.ipv4}:9705' for text in sent]
    server_out = [line for line in lines(srv) if "pycos - " not in line]
    assert server_out == [" receiver subscribed", *received], srv.stdout
    client_out = [line for line in lines(cli) if "pycos - " not in line]
    assert client_out[0] == f"server is at {h1.ipv4}:9705", cli.stdout
    # Each deliver reached both subscribers (n=2) before the next message.
    assert client_out[1:].count("  Delivered to: 2") == 10, cli.stdout
    assert [line for line in client_out if line.startswith("Received")] == received


async def test_the_scheduler_logs_its_start_like_pycos(tmp_path: Path) -> None:
    async with open_lan(1) as lan:
        (host,) = lan.hosts
        async with compat_program(host, "remote_task_server.py", cwd=tmp_path) as srv:
            with trio.fail_after(WAIT):
                await srv.wait_for_output("Enter")
            await srv.send_input("exit\n")
            with trio.fail_after(WAIT):
                assert await srv.wait() == 0, srv.describe()
    messages = log_messages(srv)
    assert messages[0].startswith("version 4.12.2 (Python ")
    assert f'TCP server "{host.ipv4}:9705" @ {host.ipv4}:9705' in messages
    assert "UDP server @ 0.0.0.0:9705" in messages
