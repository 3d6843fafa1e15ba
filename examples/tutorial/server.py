"""Tutorial, steps 2 and 3: the server node.  Runs until Ctrl-C.

Run: python examples/tutorial/server.py [PORT]     (default port: 9706)

It serves the task "greeter", the RPS "add" and the channel "news", on 127.0.0.1.
The secret is $TRIOPYCOS_SECRET, or "tutorial-secret".
"""

from __future__ import annotations

import os
import sys

import trio

from triopycos import RPS, Channel, Task, open_pycos

SECRET = os.environ.get("TRIOPYCOS_SECRET", "tutorial-secret")


async def greeter(task: Task) -> None:
    task.register("greeter")
    while True:
        sender, name = await task.receive()
        sender.send(f"hello, {name}!")


async def add(a: int, b: int) -> int:
    """An RPS: every call starts a task on this node that returns a + b."""
    return a + b


async def main(port: int) -> None:
    async with open_pycos(
        name="server", node="127.0.0.1", tcp_port=port, discover_peers=False, secret=SECRET
    ) as pycos:
        Task(greeter)
        RPS(add).register()
        Channel("news").register()
        print("server serving at", pycos.location, flush=True)
        await trio.sleep_forever()  # until Ctrl-C; leaving says goodbye to peers


if __name__ == "__main__":
    try:
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 9706)
    except KeyboardInterrupt:
        print("server stopped")
