"""Remote channels, client side: locate a channel on another node, subscribe, publish.

Run, in two terminals:

    python examples/channel_server.py
    python examples/channel_client.py --peer 127.0.0.1:9712 --stop

The client peers with the server's node, locates its channel "news" with
``Channel.locate`` and subscribes its own task. Each bulletin is published with
``deliver(msg, n=2)``: it waits until at least two tasks are subscribed (the server's
logger and this client) and returns how many got it; the client then receives its own
copy. It unsubscribes, publishes once more (``n=1``: only the logger gets that one),
and with ``--stop`` publishes "stop", which ends the server's logger.

Prints ``subscribed to news``, ``published BULLETIN to N subscribers`` and
``received BULLETIN`` per bulletin, ``unsubscribed from news``, and
``published 'after unsubscribing' to 1 subscribers``. Exits with 0, or 1 if anything
failed.
"""

from __future__ import annotations

import argparse

from _common import client_parser, peered_node, run

from triopycos import Channel, Location, Task

PORT = 9712


async def subscriber(task: Task, where: Location, count: int, stop: bool, timeout: float) -> int:
    news = await Channel.locate("news", where, timeout=timeout)
    if news is None:
        print(f"channel news not found at {where}", flush=True)
        return 1
    if await news.subscribe(task, timeout=timeout) != 0:
        print("could not subscribe to news", flush=True)
        return 1
    print("subscribed to news", flush=True)

    for number in range(1, count + 1):
        bulletin = f"bulletin {number}"
        # 0 if fewer than 2 tasks subscribed within the timeout; else how many got it.
        got = await news.deliver(bulletin, timeout=timeout, n=2)
        print(f"published {bulletin!r} to {got} subscribers", flush=True)
        if got < 2:
            return 1
        received = await task.receive(timeout=timeout)
        print(f"received {received!r}", flush=True)
        if received != bulletin:
            return 1

    if await news.unsubscribe(task, timeout=timeout) != 0:
        print("could not unsubscribe from news", flush=True)
        return 1
    print("unsubscribed from news", flush=True)
    got = await news.deliver("after unsubscribing", timeout=timeout, n=1)
    print(f"published 'after unsubscribing' to {got} subscribers", flush=True)
    if got < 1:
        return 1

    if stop:
        got = await news.deliver("stop", timeout=timeout, n=1)
        print(f"published 'stop' to {got} subscribers", flush=True)
        if got < 1:
            return 1
    return 0


async def main(args: argparse.Namespace) -> int:
    async with peered_node(args) as pycos:
        if pycos is None:
            return 1
        work = pycos.spawn(subscriber, args.peer, args.count, args.stop, args.timeout)
        result = await work.finish()
    return result if isinstance(result, int) else 1


def parser() -> argparse.ArgumentParser:
    parser = client_parser(__doc__, peer_port=PORT)
    parser.add_argument("--count", type=int, default=3, help="bulletins to publish (default: 3)")
    parser.add_argument("--stop", action="store_true", help="stop the server's logger at the end")
    return parser


if __name__ == "__main__":
    run(main, parser())
