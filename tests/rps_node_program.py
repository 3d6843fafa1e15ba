"""A node process for the cross-process RPS and channel tests (started only through
tests/procs.py).

    python tests/rps_node_program.py NAME SECRET serve
    python tests/rps_node_program.py NAME SECRET subscribe HOST PORT

Listens on $TRIOPYCOS_TEST_NODE and prints ``ready HOST PORT`` once serving.

``serve`` registers the RPSs ``double`` (returns ``2 * x`` at once), ``fails`` (raises
``ValueError``) and ``slow`` (waits for a message and returns it), and the channel
``news``; it prints ``offline NAME`` when a peer is lost.

``subscribe`` peers with the node at HOST PORT (a numeric loopback address), subscribes
a task to its channel ``news`` and prints ``subscribed``, then ``got MESSAGE`` (repr)
for every message.

Either way the process runs until it is terminated or killed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from typing import Any

import trio

from triopycos import RPS, Channel, Location, PeerStatus, Task, open_pycos


async def double(x: int) -> int:
    return 2 * x


async def fails(reason: str) -> None:
    raise ValueError(reason)


async def slow(task: Task) -> Any:
    return await task.receive()


async def keeper(task: Task) -> None:
    """Keeps the node running (its only non-daemon task) until terminated."""
    task.register("keeper")
    while True:
        await task.receive()


async def peer_watch(task: Task) -> None:
    task.set_daemon()
    while True:
        status = await task.receive()
        if isinstance(status, PeerStatus) and status.status == PeerStatus.Offline:
            print("offline", status.name, flush=True)


async def subscriber(task: Task, owner: Location) -> None:
    chan = await Channel.locate("news", owner, timeout=10)
    if chan is None or await chan.subscribe(task, timeout=10) != 0:
        print("subscribe failed", flush=True)
        return
    print("subscribed", flush=True)
    while True:
        print("got", repr(await task.receive()), flush=True)


async def main() -> None:
    name, secret, mode = sys.argv[1:4]
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    async with open_pycos(
        name=name, node=node, tcp_port=0, discover_peers=False, secret=secret
    ) as pycos:
        pycos.spawn(keeper)
        if mode == "serve":
            pycos.peer_status(pycos.spawn(peer_watch))
            for method in (double, fails, slow):
                if RPS(method).register() != 0:
                    raise RuntimeError(f"could not register RPS {method.__name__}")
            if Channel("news").register() != 0:
                raise RuntimeError("could not register channel news")
        elif mode == "subscribe":
            host, port = sys.argv[4], int(sys.argv[5])
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError(f"{host!r} is not a loopback address")
            owner = Location(host, port)
            if await pycos.peer(owner) != 0:
                raise RuntimeError(f"could not peer with {owner}")
            pycos.spawn(subscriber, owner)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        print("ready", pycos.location.addr, pycos.location.port, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main)
