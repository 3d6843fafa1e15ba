"""Remote channels, server side: a registered channel that tasks on other nodes use.

Run, in two terminals:

    python examples/channel_server.py
    python examples/channel_client.py --peer 127.0.0.1:9712 --stop

The server makes the channel "news" and registers it, so other nodes can locate it.
Its own task "logger" subscribes to the channel and prints every message published
there, from any node; the message "stop" ends it, and then the server closes the
channel and leaves. Ctrl-C or SIGTERM stops it too.

Prints ``ready HOST PORT`` once serving, ``news: MESSAGE`` per message,
``logger saw N messages`` and ``server stopped`` at the end.
"""

from __future__ import annotations

import argparse

from _common import run, serve_until_stopped, server_parser

from triopycos import Channel, Task, open_pycos

PORT = 9712


async def logger(task: Task, news: Channel) -> int:
    """Prints what is published on ``news`` until "stop"; returns how many it saw."""
    await news.subscribe(task)
    seen = 0
    while (msg := await task.receive()) != "stop":
        print(f"news: {msg!r}", flush=True)
        seen += 1
    await news.unsubscribe(task)
    print(f"logger saw {seen} messages", flush=True)
    return seen


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
    ) as pycos:
        news = Channel("news")  # on the current node: this one
        if news.register() != 0:
            raise RuntimeError('a channel is already registered as "news" on this node')
        log = pycos.spawn(logger, news)
        await serve_until_stopped(pycos, log)
        news.close()  # unregisters it and drops the subscribers
    print("server stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    return server_parser(__doc__, name="channel-server", port=PORT)


if __name__ == "__main__":
    run(main, parser())
