"""The tutorial's programs (examples/tutorial/, shown in docs/tutorial.md) do what
the tutorial says, as processes on loopback started through tests/procs.py, and the
page shows them exactly as they are."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import trio
from cli_runs import LIMIT, run_cli, wait_for_line
from procs import open_node_process

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "examples" / "tutorial"
SECRET = {"TRIOPYCOS_SECRET": "tutorial-test-secret"}


def program(name: str, *args: str) -> list[str]:
    return [str(TUTORIAL / name), *args]


def test_the_page_shows_each_program_as_it_is() -> None:
    """The page reads as plain markdown (no include lines that only the built site
    expands): each program is copied into it, under its path, and the copy must be
    the file itself, so the tested programs are what readers see."""
    page = (ROOT / "docs" / "tutorial.md").read_text()
    assert "--8<--" not in page
    shown = dict(
        re.findall(r"^`(examples/tutorial/\w+\.py)`:\n\n```python\n(.*?)^```$", page, re.M | re.S)
    )
    programs = sorted(str(p.relative_to(ROOT)) for p in TUTORIAL.glob("*.py"))
    assert sorted(shown) == programs
    for path, copy in shown.items():
        assert copy == (ROOT / path).read_text(), f"docs/tutorial.md's copy of {path} differs"


async def test_step_1_one_node() -> None:
    async with open_node_process(program("one_node.py"), timeout=LIMIT) as proc:
        with trio.fail_after(LIMIT):
            assert await proc.wait() == 0
    assert proc.stdout.splitlines() == [
        "hello, visitor!",
        "deliver returned 1 and the answer was 'hello, again!'",
        "the greeter greeted 2 times",
    ]


async def test_steps_2_and_3_three_nodes() -> None:
    async with open_node_process(program("server.py", "0"), env=SECRET, timeout=LIMIT) as server:
        await wait_for_line(server, "server serving at")
        where = server.stdout.split("server serving at ")[1].split()[0]
        async with open_node_process(
            program("listener.py", where), env=SECRET, timeout=LIMIT
        ) as listener:
            await wait_for_line(listener, "listening to news")
            async with open_node_process(
                program("client.py", where), env=SECRET, timeout=LIMIT
            ) as client:
                with trio.fail_after(LIMIT):
                    assert await client.wait() == 0
            assert client.stdout.splitlines() == [
                "hello, client!",
                "add(2, 3) = 5",
                "news reached 1 subscriber(s)",
            ]
            await wait_for_line(listener, "news: the client says hi")
            ran = await run_cli("status", where, "--secret", SECRET["TRIOPYCOS_SECRET"])
            assert ran.code == 0, ran
            for part in ("tasks (1): greeter", "channels (1): news", "RPSs (1): add", "listener"):
                assert part in ran.stdout
            # Ctrl-C on the server: it says goodbye, the listener sees it go.
            os.kill(server.pid, signal.SIGINT)
            with trio.fail_after(LIMIT):
                assert await server.wait() == 0
                assert await listener.wait() == 0
            assert listener.stdout.endswith("server went offline\n")
            assert server.stdout.endswith("server stopped\n")


async def test_a_client_with_the_wrong_secret_is_told_so() -> None:
    async with open_node_process(program("server.py", "0"), env=SECRET, timeout=LIMIT) as server:
        await wait_for_line(server, "server serving at")
        where = server.stdout.split("server serving at ")[1].split()[0]
        wrong = {"TRIOPYCOS_SECRET": "not-the-secret"}
        async with open_node_process(program("client.py", where), env=wrong, timeout=LIMIT) as c:
            with trio.fail_after(LIMIT):
                assert await c.wait() == 1
        assert f"cannot peer with {where} (is server.py running? same secret?)" in c.stderr
