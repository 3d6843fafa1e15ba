"""Tutorial, step 2: a second node uses the server's task, RPS and channel.

Run: python examples/tutorial/client.py [SERVER]   (default: 127.0.0.1:9706)
"""

from __future__ import annotations

import os
import sys

import trio

from triopycos import RPS, Channel, Location, Task, open_pycos

SECRET = os.environ.get("TRIOPYCOS_SECRET", "tutorial-secret")


async def client(task: Task, server: Location) -> None:
    greeter = await Task.locate("greeter", server, timeout=5)
    assert greeter is not None, "no greeter on the server"
    greeter.send((task, "client"))
    print(await task.receive(timeout=5))

    add = await RPS.locate("add", server, timeout=5)
    assert add is not None, "no RPS add on the server"
    rtask = await add(2, 3)  # a new task, running on the server (None if the call failed)
    assert rtask is not None, "the call of add failed"
    print("add(2, 3) =", await rtask.finish(timeout=5))

    news = await Channel.locate("news", server, timeout=5)
    assert news is not None, "no channel news on the server"
    reached = await news.deliver("the client says hi", timeout=5, n=1)
    print("news reached", reached, "subscriber(s)")


async def main(server: Location) -> None:
    async with open_pycos(
        name="client", node="127.0.0.1", tcp_port=0, discover_peers=False, secret=SECRET
    ) as pycos:
        if await pycos.peer(server) != 0:
            sys.exit(f"cannot peer with {server} (is server.py running? same secret?)")
        await Task(client, server).finish()


if __name__ == "__main__":
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9706").rpartition(":")
    trio.run(main, Location(host, int(port)))
