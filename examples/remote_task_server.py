"""Remote tasks, server side: a named task that acknowledges requests from other nodes.

Run, in two terminals:

    python examples/remote_task_server.py
    python examples/remote_task_client.py --peer 127.0.0.1:9711 --stop

The server's task registers itself as "task_server". Each request is a dict
``{"client": Task, "seq": int, "text": str}``; it answers the client's task with
``{"seq": seq, "reply": text.upper()}``. The message "stop" ends it, returning how many
requests it handled (what the client's monitor receives); the node then leaves,
saying goodbye to its peers. Ctrl-C or SIGTERM stops it too.

Prints ``ready HOST PORT`` once serving, ``request SEQ TEXT from HOST:PORT`` per
request, ``task_server handled N requests`` and ``server stopped`` at the end.
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import run, serve_until_stopped, server_parser

from triopycos import Task, open_pycos

PORT = 9711


async def task_server(task: Task) -> int:
    """Acknowledges each request; returns the number handled when it gets "stop"."""
    if task.register("task_server") != 0:
        raise RuntimeError('another task is registered as "task_server" on this node')
    handled = 0
    while (msg := await task.receive()) != "stop":
        if not _is_request(msg):
            print(f"ignored a malformed request: {msg!r}", flush=True)
            continue
        client, seq, text = msg["client"], msg["seq"], msg["text"]
        print(f"request {seq} {text!r} from {client.location}", flush=True)
        # send() queues the reply and returns at once: 0, or -1 if the client is gone.
        client.send({"seq": seq, "reply": text.upper()})
        handled += 1
    print(f"task_server handled {handled} requests", flush=True)
    return handled


def _is_request(msg: Any) -> bool:
    return (
        isinstance(msg, dict)
        and isinstance(msg.get("client"), Task)
        and isinstance(msg.get("seq"), int)
        and isinstance(msg.get("text"), str)
    )


async def main(args: argparse.Namespace) -> int:
    async with open_pycos(
        name=args.name,
        node=args.node,
        tcp_port=args.port,
        secret=args.secret,
        discover_peers=False,
    ) as pycos:
        server = pycos.spawn(task_server)
        await serve_until_stopped(pycos, server)
    print("server stopped", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    return server_parser(__doc__, name="task-server", port=PORT)


if __name__ == "__main__":
    run(main, parser())
