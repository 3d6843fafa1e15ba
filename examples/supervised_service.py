"""A supervised service that survives its worker's node being killed.

Run, in three terminals:

    python examples/supervised_worker.py --port 9716
    python examples/supervised_worker.py --port 9717
    python examples/supervised_service.py --peer 127.0.0.1:9716 --peer 127.0.0.1:9717

This node peers with the workers and starts a ``Supervisor`` with one permanent
child, given by the RPS name "squarer": the supervisor locates the RPS (on
whichever worker answers first) and calls it, which starts the child there. Then
it asks the child to square 1, 2, 3, ... once every ``--interval`` seconds.

Kill the worker the child runs on (``kill -9`` its process, or Ctrl-C): its node is
lost, the supervisor hears ``PeerLost`` from its monitor, locates the RPS afresh,
and the child runs again on the other worker. A request the lost child never
answered is asked again, so no number is skipped.

Prints ``squarer runs at HOST:PORT`` each time the child has a new node, and
``N^2 = SQUARE (from HOST:PORT)`` per answer. Ends, with status 0, once the child
has moved to another node and answered ``--count`` times there; with status 1 if
that has not happened within ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse

import trio
from _common import DEFAULT_NODE, parse_location, run

from triopycos import ChildSpec, Location, Pycos, Supervisor, Task, open_pycos

PORT = 9716


async def ask(sup: Supervisor, args: argparse.Namespace, task: Task) -> int:
    """Square 1, 2, 3, ... with the supervised child until it has moved once and
    answered ``args.count`` times on its new node."""
    homes: list[Location] = []
    n = 1
    answered_since_move = 0
    while len(homes) < 2 or answered_since_move < args.count:
        await trio.sleep(args.interval)
        child = sup.children().get("squarer")
        if child is None:  # being restarted
            continue
        if not homes or child.location != homes[-1]:
            homes.append(child.location)
            answered_since_move = 0
            print(f"squarer runs at {child.location}", flush=True)
        child.send((task, n, n))
        # An answer to a request asked again after a loss may still come in: skip it.
        with trio.move_on_after(args.interval * 10):
            answer = await task.receive()
            while not (isinstance(answer, tuple | list) and answer[0] == n):
                answer = await task.receive()
            seq, square, where = answer
            print(f"{seq}^2 = {square} (from {where})", flush=True)
            n += 1
            answered_since_move += 1
    return 0


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name, node=args.node, tcp_port=0, secret=args.secret, discover_peers=False
    ) as pycos:
        for where in args.peer:
            if await pycos.peer(where) != 0:
                print(f"could not peer with {where}", flush=True)
                return 1
        return await supervise(pycos, args)


async def supervise(pycos: Pycos, args: argparse.Namespace) -> int:
    # A child lost with its node counts as abnormal: a permanent child is restarted,
    # located afresh by its RPS name (so on a node that still serves it).
    spec = ChildSpec("squarer", "squarer", locate_timeout=args.timeout)
    sup = Supervisor([spec], max_restarts=5, max_seconds=60.0)
    asker = pycos.spawn(ask, sup, args)
    result = await asker.finish(timeout=args.deadline)
    if not isinstance(result, int):
        print(f"the squarer did not move and answer within {args.deadline} s", flush=True)
        asker.terminate()
        result = 1
    sup.terminate()
    await sup.task.finish()
    return result


def parser() -> argparse.ArgumentParser:
    summary, _, details = (__doc__ or "").partition("\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details.strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--node", default=DEFAULT_NODE, metavar="ADDRESS")
    parser.add_argument("--secret", default="triopycos-examples")
    parser.add_argument("--name", default="supervisor")
    parser.add_argument(
        "--peer",
        type=parse_location,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a worker node (give two or more)",
    )
    parser.add_argument("--count", type=int, default=3, help="answers wanted after a move")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between requests")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to locate the RPS")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds to give up after")
    return parser


if __name__ == "__main__":
    run(main, parser())
