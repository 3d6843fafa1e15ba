"""Every command of ``python -m triopycos`` as a process on loopback (started through
tests/procs.py), talking to nodes in this process or to ``triopycos node`` processes.

Exit codes are the documented ones (``ExitCode``): 0 done, 1 failed, 2 bad
arguments, 3 unreachable, 4 handshake failed, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cli_runs import LIMIT, cli_node, lines_with, run_cli, wait_for_line
from nodes import loopback_node, wait_for

from triopycos import RPS, Channel, Location, PeerStatus, Pycos, ServiceError, Task
from triopycos.cli._exit import ExitCode

SECRET = "cli-secret"


def here(name: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Pycos]:
    return loopback_node(name, **({"secret": SECRET} | kwargs))


async def idle(task: Task) -> None:
    task.set_daemon()
    await task.receive()


async def double(x: int) -> int:
    return 2 * x


async def services(task: Task) -> None:
    """A task, a channel and an RPS registered on this task's node."""
    task.set_daemon()
    task.register("worker")
    assert Channel("news").register() == 0
    assert RPS(double).register() == 0
    await task.receive()


@contextlib.asynccontextmanager
async def watched(pycos: Pycos) -> AsyncIterator[list[PeerStatus]]:
    """The PeerStatus notes ``pycos`` gets, as they come."""
    notes: list[PeerStatus] = []

    async def watch(task: Task) -> None:
        task.set_daemon()
        while True:
            notes.append(await task.receive())

    pycos.peer_status(pycos.spawn(watch))
    yield notes


async def until(predicate: Any) -> None:
    # The notes come from another process's doing, with no event to wait on.
    await wait_for(predicate, LIMIT)


# -- status, peers, ping ---------------------------------------------------------------


async def test_status_as_text_and_json() -> None:
    async with here("target") as target, here("other") as other:
        target.spawn(services)
        assert await other.peer(target.location) == 0
        ran = await run_cli("status", str(target.location), "--secret", SECRET)
        assert ran.code == 0, ran
        text = ran.stdout
        assert f"node 'target' at {target.location} (triopycos " in text
        assert "tasks (1): worker" in text
        assert "channels (1): news" in text
        assert "RPSs (1): double" in text
        assert f"peers (1):\n  other  {other.location}" in text  # not the CLI's own node
        assert "registered_channels      1" in text
        ran = await run_cli("status", str(target.location), "--secret", SECRET, "--json")
        assert ran.code == 0, ran
        shown = json.loads(ran.stdout)
        assert shown["name"] == "target" and shown["location"] == str(target.location)
        assert (shown["tasks"], shown["channels"], shown["rps"]) == (
            ["worker"],
            ["news"],
            ["double"],
        )
        assert shown["peers"] == [{"name": "other", "location": str(other.location)}]
        # Its counters count the CLI's connection too (it was a peer while it asked).
        assert shown["statistics"]["peers"] == 2 and shown["statistics"]["registered_tasks"] == 1


async def test_peers_lists_the_nodes_a_node_is_connected_to() -> None:
    async with here("hub") as hub, here("one") as one, here("two") as two:
        for node in (one, two):
            assert await node.peer(hub.location) == 0
        ran = await run_cli("peers", str(hub.location), "--secret", SECRET)
        assert ran.code == 0, ran
        lines = ran.stdout.splitlines()
        assert lines[0] == f"node 'hub' at {hub.location} has 2 peers"
        assert sorted(lines[1:]) == [f"  one  {one.location}", f"  two  {two.location}"]
        ran = await run_cli("peers", str(hub.location), "--secret", SECRET, "--json")
        shown = json.loads(ran.stdout)
        assert shown["name"] == "hub"
        assert sorted(p["name"] for p in shown["peers"]) == ["one", "two"]
        # A node with no other peers.
        ran = await run_cli("peers", str(one.location), "--secret", SECRET)
        assert ran.stdout.splitlines() == [
            f"node 'one' at {one.location} has 1 peer",
            f"  hub  {hub.location}",
        ]


async def test_peers_asks_127_0_0_1_port_9705_by_default() -> None:
    node = here("default", tcp_port=9705)
    try:
        pycos = await node.__aenter__()
    except ServiceError:  # pragma: no cover - something else holds 9705 on this machine
        pytest.skip("port 9705 is taken")
    try:
        ran = await run_cli("peers", "--secret", SECRET)
        assert ran.code == 0, ran
        assert ran.stdout.startswith(f"node 'default' at {pycos.location} has 0 peers")
    finally:
        await node.__aexit__(None, None, None)


async def test_ping_times_round_trips() -> None:
    async with here("target") as target:
        ran = await run_cli("ping", str(target.location), "--secret", SECRET, "-c", "3", "-i", "0")
        assert ran.code == 0, ran
        lines = ran.stdout.splitlines()
        assert lines[0].startswith(
            f"node 'target' at {target.location}: connected and authenticated in "
        )
        assert [line.split(":")[0] for line in lines[1:4]] == [f"round trip {n}" for n in (1, 2, 3)]
        assert all(line.endswith(" ms") for line in lines[1:4])
        assert lines[4].startswith("3 sent, 3 answered; min/avg/max ")
    ran = await run_cli("ping", "127.0.0.1:1", "-c", "0")
    assert ran.code == ExitCode.USAGE and "--count must be at least 1" in ran.stderr


async def test_ipv6_loopback() -> None:
    async with here("six", node="::1") as six:
        assert str(six.location).startswith("[::1]:")
        ran = await run_cli("status", str(six.location), "--secret", SECRET, "--node", "::1")
        assert ran.code == 0, ran
        assert f"node 'six' at {six.location}" in ran.stdout


# -- errors ----------------------------------------------------------------------------


async def test_bad_addresses_are_usage_errors() -> None:
    for command in (["status"], ["ping"], ["peers"], ["send-file"]):
        args = [*command, "127.0.0.1:http"] + (["f"] if command == ["send-file"] else [])
        ran = await run_cli(*args)
        assert ran.code == ExitCode.USAGE, ran
        assert "error: bad address '127.0.0.1:http': port 'http' is not a number" in ran.stderr


async def test_an_unreachable_peer() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ran = await run_cli("status", f"127.0.0.1:{port}", "--secret", SECRET)
    assert ran.code == ExitCode.UNREACHABLE, ran
    assert f"error: cannot reach 127.0.0.1:{port}: " in ran.stderr
    assert "Connection refused" in ran.stderr
    assert ran.stdout == ""


async def test_a_wrong_secret() -> None:
    async with here("target") as target:
        for command in ("status", "peers", "ping"):
            ran = await run_cli(command, str(target.location), "--secret", "wrong")
            assert ran.code == ExitCode.AUTHENTICATION, ran
            assert f"error: {target.location} did not authenticate: " in ran.stderr
            assert "wrong secret" in ran.stderr
        assert target.statistics().handshakes_failed == 3


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("triopycos-node")
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


async def test_tls_on_both_sides_or_a_clear_error(tls_files: dict[str, Path]) -> None:
    tls = {
        "certfile": str(tls_files["cert"]),
        "keyfile": str(tls_files["key"]),
        "cafile": str(tls_files["ca"]),
    }
    flags = ["--cert", tls["certfile"], "--key", tls["keyfile"], "--ca", tls["cafile"]]
    async with here("tls", **tls) as target:
        ran = await run_cli("status", str(target.location), "--secret", SECRET, *flags)
        assert ran.code == 0, ran
        assert "node 'tls'" in ran.stdout
        ran = await run_cli("status", str(target.location), "--secret", SECRET)
        assert ran.code == ExitCode.AUTHENTICATION, ran
        assert "TLS on both or neither" in ran.stderr
    ran = await run_cli("status", "127.0.0.1:1", "--cert", str(tls_files["ca"]) + ".missing")
    assert ran.code == ExitCode.USAGE and "cannot start the CLI's node" in ran.stderr
    ran = await run_cli("status", "127.0.0.1:1", "--key", tls["keyfile"])
    assert ran.code == ExitCode.USAGE and "--key and --ca need --cert" in ran.stderr


async def test_usage_version_and_help() -> None:
    ran = await run_cli()
    assert ran.code == ExitCode.USAGE and "required: COMMAND" in ran.stderr
    ran = await run_cli("launch")
    assert ran.code == ExitCode.USAGE and "invalid choice: 'launch'" in ran.stderr
    ran = await run_cli("--version")
    assert ran.code == 0 and ran.stdout.startswith("triopycos ")
    ran = await run_cli("--help")
    assert ran.code == 0
    for command in ("demo", "node", "peers", "status", "ping", "send-file", "exit codes:"):
        assert command in ran.stdout
    ran = await run_cli("status", "--timeout", "0", "127.0.0.1:1")
    assert ran.code == ExitCode.USAGE and "--timeout must be > 0" in ran.stderr


# -- send-file -------------------------------------------------------------------------


async def test_send_file_with_progress_and_every_outcome(tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    content = os.urandom(3 * 1024 * 1024 + 5)
    src.write_bytes(content)
    dest = tmp_path / "dest"
    async with here("target", dest_path=dest, max_file_size=4 * 1024 * 1024) as target:
        where = str(target.location)
        ran = await run_cli("send-file", where, str(src), "--dir", "in", "--secret", SECRET)
        assert ran.code == 0, ran
        assert ran.stdout.startswith(f"sent data.bin (3.0 MiB) to {where} as in/data.bin in ")
        assert (dest / "in" / "data.bin").read_bytes() == content
        # The progress bar, on stderr; not a terminal here, so a line per quarter.
        bars = lines_with(ran.stderr, "data.bin [")
        shown = [int(line.split("]")[1].split("%")[0]) for line in bars]
        assert shown[0] == 0 and shown[-1] == 100 and shown == sorted(set(shown))
        assert len(shown) <= 5  # at most a line per quarter
        assert bars[-1].endswith("3.0 MiB of 3.0 MiB")
        # Again: the same file is there.
        ran = await run_cli("send-file", where, str(src), "--dir", "in", "--secret", SECRET)
        assert ran.code == 0, ran
        assert "in/data.bin is already on" in ran.stdout and "nothing sent" in ran.stdout
        # A different file of that name: not replaced without --overwrite.
        src.write_bytes(b"changed")
        ran = await run_cli("send-file", where, str(src), "--dir", "in", "--secret", SECRET)
        assert ran.code == ExitCode.FAILED, ran
        assert "is a different file (3.0 MiB, modified " in ran.stderr
        assert "--overwrite replaces it" in ran.stderr
        assert (dest / "in" / "data.bin").read_bytes() == content
        ran = await run_cli(
            "send-file", where, str(src), "--dir", "in", "--overwrite", "--secret", SECRET,
            "--no-progress",
        )  # fmt: skip
        assert ran.code == 0, ran
        assert ran.stderr == ""
        assert (dest / "in" / "data.bin").read_bytes() == b"changed"
        # Refused by the receiver: the reason is in the error.
        ran = await run_cli("send-file", where, str(src), "--dir", "../up", "--secret", SECRET)
        assert ran.code == ExitCode.FAILED, ran
        assert "sending data.bin to" in ran.stderr and "refused" in ran.stderr
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * (4 * 1024 * 1024 + 1))
        ran = await run_cli("send-file", where, str(big), "--secret", SECRET)
        assert ran.code == ExitCode.FAILED, ran
        assert "max_file_size" in ran.stderr or "too big" in ran.stderr
        # Nothing to send.
        ran = await run_cli("send-file", where, str(tmp_path / "missing"), "--secret", SECRET)
        assert ran.code == ExitCode.FAILED
        assert "cannot send" in ran.stderr and "No such file" in ran.stderr
        ran = await run_cli("send-file", where, str(tmp_path), "--secret", SECRET)
        assert ran.code == ExitCode.FAILED and "not a regular file" in ran.stderr
        # Wrong secret: a handshake failure, before any byte of the file.
        ran = await run_cli("send-file", where, str(src), "--secret", "wrong")
        assert ran.code == ExitCode.AUTHENTICATION, ran


# -- node ------------------------------------------------------------------------------


async def test_node_logs_peers_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    async with cli_node("--name", "standalone", "--secret", SECRET) as (proc, where):
        assert "secret: set; TLS: off; discovery: off" in proc.stdout
        async with here("visitor") as visitor, watched(visitor) as notes:
            assert await visitor.peer(where) == 0
            await wait_for_line(proc, f"peer 'visitor' at {visitor.location} online")
            ran = await run_cli("status", str(where), "--secret", SECRET)
            assert "node 'standalone'" in ran.stdout and "peers (1):\n  visitor" in ran.stdout
            # The CLI's own node came and went.
            await wait_for_line(proc, "peer 'triopycos-cli-", count=2)
            os.kill(proc.pid, signal.SIGINT)
            with trio.fail_after(LIMIT):
                assert await proc.wait() == 0
            # It said goodbye: the visitor saw it go at once (no heartbeat timeout).
            await until(
                lambda: [n.status for n in notes] == [PeerStatus.Online, PeerStatus.Offline]
            )
        assert lines_with(proc.stdout, "stopping (SIGINT)") and proc.stdout.endswith("stopped\n")
        assert proc.stderr == ""


async def test_node_stops_on_sigterm_and_logs_a_leaving_peer() -> None:
    async with cli_node("--secret", SECRET) as (proc, where):
        assert f"node '{where}' serving at {where}" in proc.stdout  # named by its address
        async with here("visitor") as visitor:
            assert await visitor.peer(where) == 0
        await wait_for_line(proc, "peer 'visitor'")
        await wait_for_line(proc, "offline")
        os.kill(proc.pid, signal.SIGTERM)
        with trio.fail_after(LIMIT):
            assert await proc.wait() == 0
        assert lines_with(proc.stdout, "stopping (SIGTERM)")


async def test_node_peers_at_start_and_says_why_it_could_not(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    async with (
        here("first") as first,
        here("stranger", secret="another") as stranger,
        watched(first) as notes,
    ):
        args = ["--name", "joiner", "--secret-file", str(secret_file)]
        for location in (first.location, Location("127.0.0.1", closed), stranger.location):
            args += ["--peer", str(location)]
        async with cli_node(*args) as (proc, where):
            await until(lambda: any(n.name == "joiner" for n in notes))
            await wait_for_line(proc, "peer 'first'")
            await wait_for_line(proc, f"cannot peer with 127.0.0.1:{closed}: it cannot be reached")
            await wait_for_line(
                proc, f"cannot peer with {stranger.location}: it did not authenticate"
            )
            assert first.peers() == [where]


async def test_node_receives_files_into_dest_path_within_max_file_size(tmp_path: Path) -> None:
    dest = tmp_path / "incoming"
    async with cli_node("--secret", SECRET, "--dest-path", str(dest), "--max-file-size", "1K") as (
        proc,
        where,
    ):
        assert f"files go to {dest} (at most 1024 bytes)" in proc.stdout
        small, big = tmp_path / "small.txt", tmp_path / "big.txt"
        small.write_bytes(b"s" * 1024)
        big.write_bytes(b"b" * 1025)
        async with here("sender") as sender:
            assert await sender.send_file(where, small) == 0
            assert await sender.send_file(where, big) == -1
        assert (dest / "small.txt").read_bytes() == b"s" * 1024
        assert not (dest / "big.txt").exists()


async def test_node_refuses_bad_arguments_before_starting() -> None:
    for args, message in [
        (["--peer", "127.0.0.1:x"], "bad address '127.0.0.1:x'"),
        (["--max-file-size", "ten"], "bad size 'ten'"),
        (["--udp-port", "70000"], "--udp-port must be 0..65535"),
        (["--key", "k.pem"], "--key and --ca need --cert"),
        (["--cert", "/nonexistent/cert.pem"], "cannot start the node"),
        (["--secret-file", "/nonexistent/secret"], "cannot read the secret file"),
        (["--discover"], "--discover needs --node with an address on the network"),
        (["--discover", "--node", "::1"], "--discover needs --node"),
    ]:
        ran = await run_cli("node", "--tcp-port", "0", *args)
        assert ran.code == ExitCode.USAGE, (args, ran)
        assert message in ran.stderr, (args, ran)
        assert "serving at" not in ran.stdout


async def test_node_on_a_taken_port_fails_to_start() -> None:
    async with here("holder") as holder:
        ran = await run_cli("node", "--tcp-port", str(holder.location.port))
        assert ran.code == ExitCode.FAILED, ran
        # Where, and why, in words: not the service's name nor an OSError's repr.
        expected = (
            f"cannot start the node: cannot listen on {holder.location}: address already in use"
        )
        assert expected in ran.stderr, ran
