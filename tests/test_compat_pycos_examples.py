"""pycos 4.12.2's own example programs (all but dispycos's), as installed from PyPI and
not edited, run under pycos and under ``python -m triopycos.compat``, at once, each in
network namespaces of its own (so that the networked ones discover each other by
broadcast, and fixed ports do not clash).  Prompts are answered on stdin, as a
person would.  Each test checks facts that follow from the example's own logic
(sums, counts, checksums, who received what, exit statuses), the same for both.

This file: the netpycos servers and clients (two hosts); the programs on one host
are in test_compat_pycos_examples_local.py, the chat programs in
test_compat_pycos_examples_chat.py.

Root only (network namespaces); CI runs as root.  See tests/example_runs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from example_runs import (
    exits_0,
    log_messages,
    on_both,
    printed,
    program,
    server_and_client,
    shown,
)
from netns import needs_netns, open_lan

pytestmark = [pytest.mark.netns, needs_netns]


# -- netpycos servers and clients on two hosts ------------------------------------------


MSG = r"msg_id (\d+): client (\d), msg (\d)"


async def test_remote_task_server_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, cli, _, _ = await server_and_client(
            runner, folder, "remote_task_server.py", "remote_task_client.py"
        )
        # 10 client tasks send 3 messages each: msg_id 1..30, one per (client, msg).
        out = printed(srv)
        started = [m for x in out if (m := re.fullmatch(rf"processing {MSG}", x))]
        done = [m for x in out if (m := re.fullmatch(rf"  done with {MSG}", x))]
        assert len(started) == len(done) == 30 and len(out) == 60, srv.stdout
        for group in (started, done):
            assert sorted(int(m.group(1)) for m in group) == list(range(1, 31))
            pairs = {(int(m.group(2)), int(m.group(3))) for m in group}
            assert pairs == {(c, n) for c in range(10) for n in range(3)}
        assert printed(cli) == []

    await on_both(check, tmp_path)


async def test_rps_pico_service_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, cli, h1, _ = await server_and_client(
            runner, folder, "rps_pico_service.py", "rps_pico_client.py"
        )
        messages = log_messages(cli)
        at = rf"{re.escape(h1.ipv4)}:9705"
        assert f"pico service RPS is at {h1.ipv4}:9705" in messages, cli.stdout
        tasks = [m for m in messages if m.startswith("service task: ")]
        results = [m for m in messages if m.startswith("result: ")]
        assert len(tasks) == 5 and len(results) == 5, cli.stdout
        for line in tasks:
            assert re.fullmatch(rf"service task: pico_service/\d+@{at}", line), line
        for line in results:
            # time.asctime() from the service, and the service task that computed it.
            assert re.fullmatch(
                rf"result: \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}, "
                rf"from: pico_service/\d+@{at}",
                line,
            ), line
        # (the client's own warnings; pycos also logs some of its own internals)
        assert not [m for m in messages if m.startswith(("rtask ", "invalid reply"))]
        assert printed(srv) == []

    await on_both(check, tmp_path)


async def test_pico_service_task_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        _, cli, h1, _ = await server_and_client(
            runner, folder, "pico_service_task.py", "pico_client_task.py"
        )
        messages = log_messages(cli)
        assert f"pico service task is at {h1.ipv4}:9705" in messages, cli.stdout
        (result,) = [m for m in messages if m.startswith("result: ")]
        assert re.fullmatch(
            rf"result: \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}, "
            rf"from: pico_service/\d+@{re.escape(h1.ipv4)}:9705",
            result,
        ), result

    await on_both(check, tmp_path)


async def test_remote_channel_server_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, cli, h1, h2 = await server_and_client(
            runner, folder, "remote_channel_server.py", "remote_channel_client.py"
        )
        sent = [f"message {i}" for i in range(10)] + ["None"]
        received = [f'Received "{text}" from sender_proc at {h2.ipv4}:9705' for text in sent]
        assert printed(srv) == [" receiver subscribed", *received], srv.stdout
        out = printed(cli)
        assert out[0] == f"server is at {h1.ipv4}:9705", cli.stdout
        # Each deliver reached both subscribers (n=2) before the next message.
        assert out[1:].count("  Delivered to: 2") == 10, cli.stdout
        assert [line for line in out if line.startswith("Received")] == received

    await on_both(check, tmp_path)


async def test_rps_monitor_server_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        async with open_lan(2) as lan:
            h1, h2 = lan.hosts
            async with program(runner, h1, "rps_monitor_server.py", home=folder) as srv:
                await shown(srv, "UDP server")  # (it prompts with no text)
                async with program(runner, h2, "rps_monitor_client.py", home=folder) as cli:
                    await exits_0(cli)
                await srv.send_input("quit\n")
                await exits_0(srv)
        messages = log_messages(cli)
        assert f"RPS is at {h1.ipv4}:9705" in printed(cli), cli.stdout
        # rps_server(a, b=i) sleeps b seconds and returns its message for b > 0,
        # and raises for b = 0: the client's monitor hears of all five.
        finished = sorted(
            m.group(1)
            for x in messages
            if (m := re.fullmatch(r"RPS rps_server/\S+ finished with: (msg:\d)", x))
        )
        failed = [x for x in messages if re.match(r"RPS rps_server/\S+ failed with: ", x)]
        assert finished == [f"msg:{i}" for i in range(1, 5)], cli.stdout
        assert len(failed) == 1 and "invalid invocation: 0" in cli.stdout, cli.stdout

    await on_both(check, tmp_path)


async def test_rps_node_server_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, cli, _, _ = await server_and_client(
            runner, folder, "rps_node_server.py", "rps_node_client.py", answers="s3cret\n"
        )
        # The client sends node_update_script.py (send_file), proves it knows the
        # authentication string, and the server runs the script through a pipe.
        ran = [x for x in printed(srv) if x.startswith("RPS ")]
        assert len(ran) == 1, srv.stdout
        assert re.search(r" running \S+/rps_update_scripts/node_update_script\.py ", ran[0])
        out = printed(cli)
        assert out[0].startswith("RPS server is at "), cli.stdout
        assert re.fullmatch(r"script output: b'\S+node_update_script.py done\\n'", out[1]), out
        assert len(out) == 2, cli.stdout  # no error output, no failure

    await on_both(check, tmp_path)


async def test_rps_log_watch_server_and_client(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        log = folder / "auth.log"
        log.write_text("")
        async with open_lan(2) as lan:
            h1, h2 = lan.hosts
            async with program(runner, h1, "rps_log_watch_server.py", str(log), home=folder) as srv:
                await shown(srv, "Enter")
                async with program(runner, h2, "rps_log_watch_client.py", home=folder) as cli:
                    await shown(srv, "serving client")
                    with log.open("a") as file:
                        file.write("login failed for alice\nlogin ok for bob\nFAILED again\n")
                    await shown(cli, "FAILED again")
                    await cli.send_input("quit\n")
                    await exits_0(cli)
                await srv.send_input("quit\n")
                await exits_0(srv)
        # `tail -f LOG | grep -i failed` on the server; its lines reach the client.
        out = printed(cli)
        assert f"{h1.ipv4}: login failed for alice" in out, cli.stdout
        assert f"{h1.ipv4}: FAILED again" in out, cli.stdout
        assert not [line for line in out if "bob" in line], cli.stdout

    await on_both(check, tmp_path)


async def test_the_scheduler_logs_its_start_like_pycos(tmp_path: Path) -> None:
    async with open_lan(1) as lan:
        (host,) = lan.hosts
        async with program("compat", host, "remote_task_server.py", home=tmp_path) as srv:
            await shown(srv, "Enter")
            await srv.send_input("exit\n")
            await exits_0(srv)
    messages = log_messages(srv)
    assert messages[0].startswith("version 4.12.2 (Python ")
    assert f'TCP server "{host.ipv4}:9705" @ {host.ipv4}:9705' in messages
    assert "UDP server @ 0.0.0.0:9705" in messages
