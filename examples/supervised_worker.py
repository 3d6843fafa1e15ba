"""A worker node for the supervision example: it serves the RPS "squarer".

Run, in three terminals:

    python examples/supervised_worker.py --port 9716
    python examples/supervised_worker.py --port 9717
    python examples/supervised_service.py --peer 127.0.0.1:9716 --peer 127.0.0.1:9717

Each call of the RPS "squarer" starts, on this node, a task that answers
``(client, seq, n)`` requests with ``(seq, n * n, location)``: the supervisor in
``supervised_service.py`` calls it to start its child. Kill the worker the child
runs on (Ctrl-C, or ``kill -9``): the supervisor starts the child again on the
other worker.

Prints ``ready HOST PORT`` once serving and ``squarer started`` per child started.
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import run, serve_until_stopped, server_parser

from triopycos import RPS, Task, open_pycos

PORT = 9716


async def squarer(task: Task) -> None:
    """The supervised child's body: answers requests until it is terminated."""
    print("squarer started", flush=True)
    while True:
        request = await task.receive()
        if _is_request(request):
            client, seq, n = request
            client.send((seq, n * n, task.location))


def _is_request(msg: Any) -> bool:
    return (
        isinstance(msg, tuple | list)
        and len(msg) == 3
        and isinstance(msg[0], Task)
        and isinstance(msg[1], int)
        and isinstance(msg[2], int)
    )


async def keeper(task: Task) -> None:
    """Keeps the node serving until it is stopped (Ctrl-C or SIGTERM)."""
    while True:
        await task.receive()


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
    ) as pycos:
        if RPS(squarer).register() != 0:
            raise RuntimeError('an RPS is already registered as "squarer"')
        await serve_until_stopped(pycos, pycos.spawn(keeper))
    print("worker stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    return server_parser(__doc__, name=None, port=PORT)


if __name__ == "__main__":
    run(main, parser())
