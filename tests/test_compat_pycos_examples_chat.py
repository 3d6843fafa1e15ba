"""pycos 4.12.2's chat examples (a server and two clients, each on its own host in a
network namespace), unedited, under pycos and under ``python -m triopycos.compat`` at
once; the clients' lines are typed on their stdin, as a person would.

Root only (network namespaces); CI runs as root.  See tests/example_runs.py.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import signal
from pathlib import Path

import pytest
import trio
from example_runs import (
    exits_0,
    lines,
    on_both,
    printed,
    program,
    shown,
    wait_listening,
)
from netns import NetnsHost, needs_netns, open_lan
from procs import NodeProcess

pytestmark = [pytest.mark.netns, needs_netns]


async def chat(
    runner: str,
    folder: Path,
    server: str,
    client: str,
    *,
    ready: str,
    says: str,
    stop_server: str = "quit",
) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """A chat server and two clients (a, b), each on its own host: b speaks first (so
    a is surely connected), then a; both quit; the server is stopped."""
    async with open_lan(3) as lan:
        hs, ha, hb = lan.hosts
        async with program(runner, hs, server, home=folder) as srv:
            await ready_server(srv, hs, ready)
            async with (
                program(runner, ha, client, hs.ipv4, home=folder) as a,
                program(runner, hb, client, hs.ipv4, home=folder) as b,
            ):
                # (b speaks until a, which may connect after it, hears it)
                await say_until_heard(b, a, f"{says}hi from b", "hi from b")
                await a.send_input("hello from a\n")
                await shown(b, f"{says}hello from a")
                for proc in (a, b):
                    await proc.send_input("quit\n")
                    await exits_0(proc)
            if stop_server == "quit":
                await srv.send_input("quit\n")
            else:
                await interrupt(srv)
            await exits_0(srv)
    return srv, a, b


async def interrupt(proc: NodeProcess) -> None:
    """Ctrl-C, as often as needed (5 times at most): a program whose main thread
    blocks in ``accept()`` while other threads run may miss one (CPython's handler
    can run in another thread, or just before the call; then nothing interrupts it)."""
    for _ in range(5):
        os.kill(proc.pid, signal.SIGINT)
        with trio.move_on_after(3):
            await proc.wait()
            return


async def ready_server(srv: NodeProcess, host: NetnsHost, ready: str) -> None:
    if ready.isdigit():
        await wait_listening(host, int(ready))
    else:
        await shown(srv, ready)


@pytest.mark.parametrize("server", ["chat_server.py", "chat_server2.py"])
async def test_chat_server_and_clients(tmp_path: Path, server: str) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, a, b = await chat(
            runner, folder, server, "chat_client.py", ready="3456", says=" says: bytearray(b'"
        )
        # Each line goes to the other client, tagged with the sender's connection
        # (pycos hands the server a bytearray, and the server prints it as such).
        assert any(re.fullmatch(r"  \d+ says: bytearray\(b'hi from b'\)", x) for x in lines(a))
        assert any(re.fullmatch(r"  \d+ says: bytearray\(b'hello from a'\)", x) for x in lines(b))
        assert not [x for x in lines(a) if "hello from a" in x], a.stdout
        assert not [x for x in lines(b) if "hi from b" in x], b.stdout
        assert printed(srv)[0] == "server at ('0.0.0.0', 3456)", srv.stdout

    await on_both(check, tmp_path)


async def test_chat_sock_server_and_clients(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        srv, a, b = await chat(
            runner,
            folder,
            "chat_sock_server.py",
            "chat_sock_client.py",
            ready="Ctrl-C",
            says=" says: ",
            stop_server="SIGINT",
        )
        out_a, out_b = printed(a), printed(b)
        id_a, id_b = (int(out[0].removeprefix("id: ")) for out in (out_a, out_b))
        # Whoever connected second was announced to the other.
        assert (f"{id_b} joined" in out_a) != (f"{id_a} joined" in out_b), (a.stdout, b.stdout)
        assert f"{id_b} says: hi from b" in out_a, a.stdout
        assert f"{id_a} says: hello from a" in out_b, b.stdout
        assert printed(srv)[0] == "server at ('0.0.0.0', 3456)", srv.stdout

    await on_both(check, tmp_path)


class ClientGaveUp(Exception):
    """A chat_chan_client.py printed "Could not locate server" and ended."""


async def say_until_heard(
    speaker: NodeProcess, listener: NodeProcess, heard: str, text: str | None = None
) -> None:
    """``speaker`` types ``text`` (default: ``heard``) until ``listener`` shows
    ``heard`` (a chat client hears others only once it is in, which it does not
    show; bounded: 100 tries)."""
    text = heard if text is None else text
    for _ in range(100):
        for proc in (speaker, listener):
            if proc.returncode is not None and "Could not locate server" in proc.stdout:
                raise ClientGaveUp(proc)
        with contextlib.suppress(trio.BrokenResourceError):  # (a client that gave up)
            await speaker.send_input(f"{text}\n")
        with trio.move_on_after(0.5):
            try:
                await listener.wait_for_output(heard)
            except EOFError:
                # It gave up while we waited (pycos's locate took a "not here").
                if "Could not locate server" in listener.stdout:
                    raise ClientGaveUp(listener) from None
                raise
            return
    raise AssertionError(f"{heard!r} never heard:\n{listener.describe()}")


async def test_chat_chan_server_and_clients(tmp_path: Path) -> None:
    async def check(runner: str, folder: Path) -> None:
        async with open_lan(3) as lan, contextlib.AsyncExitStack() as stack:
            hs, ha, hb = lan.hosts

            async def client(host: NetnsHost) -> NodeProcess:
                return await stack.enter_async_context(
                    program(runner, host, "chat_chan_client.py", home=folder)
                )

            srv = await stack.enter_async_context(
                program(runner, hs, "chat_chan_server.py", home=folder)
            )
            await shown(srv, "Enter")
            a, b = await client(ha), await client(hb)
            # pycos's locate() takes the first answer, even a "not here" from the
            # other client: a client that gives up so is started again (pycos only;
            # triopycos waits for the answer that finds the server).
            for _ in range(8 if runner == "pycos" else 1):
                try:
                    await say_until_heard(b, a, "hi from b")
                    break
                except ClientGaveUp as gone:
                    if gone.args[0] is a:
                        a = await client(ha)
                    else:
                        b = await client(hb)
            (id_b,) = {m.group(1) for x in lines(a) if (m := HEARD.fullmatch(x))}
            await a.send_input("SHOUTING\nhello from a\n")
            await shown(b, "hello from a")
            await b.send_input("quit\n")
            await exits_0(b)
            await shown(a, f"    {id_b} {'left :-(' if transformed(runner) else 'bye'}")
            await a.send_input("quit\n")
            await exits_0(a)
            await srv.send_input("quit\n")
            await exits_0(srv)
        # The server numbers the clients as they join; its channel's transform
        # rewrites messages ("says: ...") and drops what is all capitals.
        said = r"says: " if transformed(runner) else ""
        heard = [m for x in lines(b) if (m := re.fullmatch(rf"    (\d+) {said}(.*)", x))]
        assert {m.group(1) for m in heard} - {id_b}, b.stdout  # from a, not from itself
        texts = [m.group(2) for m in heard]
        if transformed(runner):
            assert texts[-1:] == ["hello from a"], b.stdout
        else:
            assert texts[-2:] == ["SHOUTING", "hello from a"], b.stdout

    await on_both(check, tmp_path)


def transformed(runner: str) -> bool:
    """Whether channel transforms apply: pycos 4.12.2 checks them with
    ``inspect.getargspec``, gone since Python 3.11, and so ignores every one."""
    return runner == "compat" or hasattr(inspect, "getargspec")


HEARD = re.compile(r"    (\d+) (?:says: )?hi from b")
