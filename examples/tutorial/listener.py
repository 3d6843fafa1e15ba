"""Tutorial, step 3: a third node listens to the server's channel "news".

Run: python examples/tutorial/listener.py [SERVER] [COUNT]
(default: 127.0.0.1:9706, until the server goes away)
"""

from __future__ import annotations

import os
import sys

import trio

from triopycos import Channel, Location, PeerStatus, Task, open_pycos

SECRET = os.environ.get("TRIOPYCOS_SECRET", "tutorial-secret")


async def listen(task: Task, count: float) -> None:
    got = 0
    while got < count:
        msg = await task.receive()
        if isinstance(msg, PeerStatus):  # from pycos.peer_status(): peers come and go
            if msg.status == PeerStatus.Offline:
                print(msg.name, "went offline", flush=True)
                return
        else:
            print("news:", msg, flush=True)
            got += 1


async def main(server: Location, count: float) -> None:
    async with open_pycos(
        name="listener", node="127.0.0.1", tcp_port=0, discover_peers=False, secret=SECRET
    ) as pycos:
        if await pycos.peer(server) != 0:
            sys.exit(f"cannot peer with {server} (is server.py running? same secret?)")
        news = await Channel.locate("news", server, timeout=5)
        assert news is not None, "no channel news on the server"
        listener = Task(listen, count)
        pycos.peer_status(listener)
        assert await news.subscribe(listener) == 0
        print("listening to news", flush=True)
        await listener.finish()


if __name__ == "__main__":
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9706").rpartition(":")
    count = float(sys.argv[2]) if len(sys.argv) > 2 else float("inf")
    trio.run(main, Location(host, int(port)), count)
