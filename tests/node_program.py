"""A node process for the cross-process tests (started only through tests/procs.py).

    python tests/node_program.py NAME SECRET [TCP_PORT [CERTFILE KEYFILE CAFILE]]

Listens on $TRIOPYCOS_TEST_NODE, prints ``ready HOST PORT`` once serving, and runs:

* ``server_task``: collects messages until ``None``, then returns them; a message
  ``("echo", sender, x)`` is answered with ``x`` sent to ``sender``; ``"raise"`` makes
  it raise ``ValueError``;
* ``sleeper``: waits for messages forever (a target for terminate and kill tests).

The process ends when ``server_task`` has ended and ``sleeper`` is terminated, or
when it is killed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import trio

from triopycos import Task, open_pycos


async def server(task: Task) -> list[Any]:
    task.register("server_task")
    got: list[Any] = []
    while (msg := await task.receive()) is not None:
        if msg == "raise":
            raise ValueError("asked to fail")
        if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "echo":
            msg[1].send(msg[2])
            continue
        got.append(msg)
    return got


async def sleeper(task: Task) -> None:
    task.register("sleeper")
    while True:
        await task.receive()


async def main() -> None:
    name, secret = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    certfile, keyfile, cafile = sys.argv[4:7] if len(sys.argv) > 6 else (None, None, None)
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    async with open_pycos(
        name=name,
        node=node,
        tcp_port=port,
        discover_peers=False,
        secret=secret,
        certfile=certfile,
        keyfile=keyfile,
        cafile=cafile,
    ) as pycos:
        pycos.spawn(server)
        pycos.spawn(sleeper)
        print("ready", pycos.location.addr, pycos.location.port, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main)
