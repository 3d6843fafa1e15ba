"""Remote procedure services (RPS), server side: each call runs a new task here.

Run, in two terminals:

    python examples/rps_server.py
    python examples/rps_client.py --peer 127.0.0.1:9713 --stop

The server registers two services. ``factorial(n)`` starts a task on this node that
computes ``n!`` and returns it; for a negative ``n`` it raises ``ValueError``, which
the caller receives as a ``MonitorStatus``. ``shutdown()`` tells the task that keeps
this node serving to end, so the node leaves. Ctrl-C or SIGTERM stops it too.

Prints ``ready HOST PORT`` once serving, ``factorial(N) called`` per call,
``shutdown called`` and ``server stopped`` at the end.
"""

from __future__ import annotations

import argparse

import trio.lowlevel
from _common import run, serve_until_stopped, server_parser

from triopycos import RPS, Task, open_pycos

PORT = 9713


async def factorial(n: int) -> int:
    """The body of every task a call of the RPS "factorial" starts."""
    print(f"factorial({n}) called", flush=True)
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"factorial needs an int >= 0, not {n!r}")
    result = 1
    for k in range(2, n + 1):
        result *= k
        await trio.lowlevel.checkpoint()  # a long computation lets other tasks run
    return result


async def keeper(task: Task) -> None:
    """Keeps the node serving (its one long-lived task) until it receives "stop"."""
    while await task.receive() != "stop":
        pass


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
    ) as pycos:
        keep = pycos.spawn(keeper)

        async def shutdown() -> str:
            print("shutdown called", flush=True)
            keep.send("stop")
            return f"{pycos.name} is shutting down"

        # RPS(...) is made on the current node: this one.  register() makes it
        # locatable by name (its function's name here).
        for service in (RPS(factorial), RPS(shutdown)):
            if service.register() != 0:
                raise RuntimeError(f"an RPS is already registered as {service!r}")
        await serve_until_stopped(pycos, keep)
    print("server stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    return server_parser(__doc__, name="rps-server", port=PORT)


if __name__ == "__main__":
    run(main, parser())
