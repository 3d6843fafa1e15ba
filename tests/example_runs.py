"""Running pycos 4.12.2's example programs, unedited, in network namespaces: under
pycos itself (``python SCRIPT``) and under ``python -m triopycos.compat SCRIPT``, the
two at once, each in namespaces of its own (the examples use fixed ports).

Each run gets its own working folder, which is also its ``TMPDIR`` (where both
schedulers keep received files).  Reading output: :func:`lines` drops the examples'
input prompts, :func:`log_messages` gives the messages of pycos logger lines.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from netns import NetnsHost, open_lan
from procs import NodeProcess, open_node_process

__all__ = [
    "EXAMPLES",
    "RUNNERS",
    "WAIT",
    "a_text_file",
    "example",
    "exits_0",
    "lines",
    "log_messages",
    "on_both",
    "printed",
    "program",
    "run_alone",
    "server_and_client",
    "shown",
    "wait_listening",
]

_spec = importlib.util.find_spec("pycos")  # found, not imported
EXAMPLES = Path(_spec.origin).parent / "examples" if _spec and _spec.origin else Path("-")
RUNNERS = ("pycos", "compat")
WAIT = 60  # seconds, generous: the programs themselves sleep up to ~10 s

Check = Callable[[str, Path], Awaitable[None]]


def example(name: str) -> str:
    path = EXAMPLES / name
    assert path.is_file(), f"pycos 4.12.2's examples are needed (pip install pycos): {path}"
    return str(path)


@asynccontextmanager
async def program(
    runner: str, host: NetnsHost, script: str, *args: str, home: Path, cwd: Path | None = None
) -> AsyncIterator[NodeProcess]:
    """The example ``script`` (a name in pycos's examples folder) run by ``runner``
    ("pycos" or "compat") inside ``host``'s namespace, stdin piped, with ``home`` as
    its ``TMPDIR`` and (unless ``cwd`` is given) its working folder."""
    path = example(script)
    argv = [path, *args] if runner == "pycos" else ["-m", "triopycos.compat", path, *args]
    async with open_node_process(
        argv,
        node=host.ipv4,
        netns=host.netns,
        stdin=True,
        cwd=str(cwd or home),
        env={"TMPDIR": str(home)},
        timeout=WAIT + 30,
    ) as proc:
        yield proc


async def on_both(check: Check, tmp_path: Path) -> None:
    """``check(runner, folder)`` for pycos and for the compat runner, at once; a
    failure of either fails the test (noted with its runner)."""
    failures: list[Exception] = []

    async def one(runner: str) -> None:
        folder = tmp_path / runner
        folder.mkdir()
        try:
            await check(runner, folder)
        except Exception as exc:
            exc.add_note(f"(running under {runner})")
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for runner in RUNNERS:
            nursery.start_soon(one, runner)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup("the example failed under both", failures)


_PROMPTS = re.compile(
    r'Enter "quit" or "exit" to (?:terminate|quit)[^:\n]*: '
    r"|Enter authentication string: "
    r'|Enter "client" to replace client\n"server" to replace server\n"quit" to exit: '
)


def lines(proc: NodeProcess) -> list[str]:
    """Non-blank output lines; a prompt has no newline, so what follows it is put on
    a line of its own."""
    return [line for line in _PROMPTS.sub("\n", proc.stdout).splitlines() if line.strip()]


def printed(proc: NodeProcess) -> list[str]:
    """Output lines that are not the pycos logger's."""
    return [line for line in lines(proc) if not _LOG.fullmatch(line)]


_LOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d pycos - (.*)")


def log_messages(proc: NodeProcess) -> list[str]:
    """pycos logger lines ("YYYY-mm-dd HH:MM:SS pycos - message"), messages only."""
    return [m.group(1) for line in lines(proc) if (m := _LOG.fullmatch(line))]


async def wait_listening(host: NetnsHost, port: int) -> None:
    """Until a TCP socket listens on ``port`` in ``host``'s namespace (the examples
    start listening in a task, after their prompt)."""
    wanted = f":{port:04X} "
    while True:
        result = await trio.run_process(
            ["ip", "netns", "exec", host.netns, "cat", "/proc/net/tcp", "/proc/net/tcp6"],
            capture_stdout=True,
        )
        for row in result.stdout.decode().splitlines()[1:]:
            fields = row.split()
            if len(fields) > 3 and (fields[1] + " ").endswith(wanted) and fields[3] == "0A":
                return
        await trio.sleep(0.05)


async def exits_0(proc: NodeProcess) -> None:
    with trio.fail_after(WAIT):
        assert await proc.wait() == 0, proc.describe()


async def shown(proc: NodeProcess, text: str, count: int = 1) -> None:
    with trio.fail_after(WAIT):
        await proc.wait_for_output(text, count=count)


async def run_alone(runner: str, folder: Path, script: str, *args: str) -> NodeProcess:
    """A program that needs no input, in a namespace of its own, to its end (exit 0)."""
    async with (
        open_lan(1) as lan,
        program(runner, lan.hosts[0], script, *args, home=folder) as proc,
    ):
        await exits_0(proc)
    return proc


async def server_and_client(
    runner: str,
    folder: Path,
    server: str,
    client: str,
    client_args: Sequence[str] = (),
    answers: str = "",
) -> tuple[NodeProcess, NodeProcess, NetnsHost, NetnsHost]:
    """netpycos server and client on two hosts: the client runs to its end, then the
    server is told "quit" and must exit 0.  ``answers``: both programs' first input."""
    async with open_lan(2) as lan:
        h1, h2 = lan.hosts
        async with program(runner, h1, server, home=folder) as srv:
            if answers:
                await srv.send_input(answers)
            await shown(srv, "Enter")  # its prompt: it is serving
            async with program(runner, h2, client, *client_args, home=folder) as cli:
                if answers:
                    await cli.send_input(answers)
                await exits_0(cli)
            await srv.send_input("quit\n")
            await exits_0(srv)
    return srv, cli, h1, h2


def a_text_file(folder: Path) -> Path:
    """Input for the file and pipe examples: lines, some with "error" in any case."""
    path = folder / "input.txt"
    words = ["error", "fine", "ERROR", "ok", "an Error here", "warning"]
    path.write_text("".join(f"line {i}: {words[i % len(words)]}\n" for i in range(3000)))
    return path
