"""Remote procedure services (RPS), client side: call a service on another node.

Run, in two terminals:

    python examples/rps_server.py
    python examples/rps_client.py --peer 127.0.0.1:9713 --stop

The client peers with the server's node and locates its RPS "factorial" with
``RPS.locate``. It calls it once for each number (``await factorial(n)`` starts a
task on the server and returns a reference to it) and only then collects the
results, with ``finish(timeout=...)``: the tasks run side by side on the server. A
call for a negative number raises there; its ``finish`` gives the ``MonitorStatus``
instead of a value, and the client reports it and goes on. With ``--stop`` it then
calls the server's RPS "shutdown".

Prints ``located RPS factorial``, then ``factorial(N) = RESULT`` or
``factorial(N) failed: raised ValueError: ...`` per number, and with ``--stop``
``shutdown returned ...``. Exits with 0 when every call was answered (a call that
raised counts: it was answered, with its error), else 1.
"""

from __future__ import annotations

import argparse

from _common import client_parser, describe_status, peered_node, run

from triopycos import RPS, Location, MonitorStatus, Task

PORT = 9713


async def caller(where: Location, numbers: list[int], stop: bool, timeout: float) -> int:
    factorial = await RPS.locate("factorial", where, timeout=timeout)
    if factorial is None:
        print(f"RPS factorial not found at {where}", flush=True)
        return 1
    print("located RPS factorial", flush=True)

    # Start every call first: each one is a task running on the server.
    calls: list[tuple[int, Task | None]] = [(n, await factorial(n)) for n in numbers]
    failures = 0
    for n, rtask in calls:
        if rtask is None:  # the call itself failed: unknown name, bad arguments, no node
            print(f"factorial({n}) could not be called", flush=True)
            failures += 1
            continue
        result = await rtask.finish(timeout=timeout)
        if isinstance(result, MonitorStatus):  # the task raised
            print(f"factorial({n}) failed: {describe_status(result)}", flush=True)
        elif result is None:  # timed out, terminated, or its node went away
            print(f"factorial({n}): no result within {timeout} s", flush=True)
            failures += 1
        else:
            print(f"factorial({n}) = {result}", flush=True)

    if stop:
        shutdown = await RPS.locate("shutdown", where, timeout=timeout)
        rtask = await shutdown() if shutdown is not None else None
        if rtask is None:
            print("could not call RPS shutdown", flush=True)
            return 1
        print(f"shutdown returned {await rtask.finish(timeout=timeout)!r}", flush=True)
    return 1 if failures else 0


async def main(args: argparse.Namespace) -> int:
    async with peered_node(args) as pycos:
        if pycos is None:
            return 1
        work = pycos.spawn(caller, args.peer, args.numbers, args.stop, args.timeout)
        result = await work.finish()
    return result if isinstance(result, int) else 1


def parser() -> argparse.ArgumentParser:
    parser = client_parser(__doc__, peer_port=PORT)
    parser.add_argument(
        "numbers",
        type=int,
        nargs="*",
        default=[5, 10, 20, -3],
        help="numbers to call factorial for (default: 5 10 20 -3)",
    )
    parser.add_argument("--stop", action="store_true", help="call the server's shutdown at the end")
    return parser


if __name__ == "__main__":
    run(main, parser())
