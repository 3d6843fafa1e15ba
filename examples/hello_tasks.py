"""Two local tasks, one async and one pycos-style generator, talking through mailboxes.

Run: python examples/hello_tasks.py
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import trio

import triopycos
from triopycos import Task


async def counter(task: Task) -> int:
    """Answers each number it receives with the next one; stops at None."""
    answered = 0
    while (msg := await task.receive()) is not None:
        sender, n = msg
        sender.send(n + 1)
        answered += 1
    return answered


def asker(task: Task, peer: Task) -> Generator[Any, Any, str]:
    """pycos syntax: `msg = yield task.receive()`."""
    n = 0
    for _ in range(3):
        peer.send((task, n))
        n = yield task.receive()
        print(f"asker got {n}")
    peer.send(None)
    return f"asker finished at {n}"


async def main() -> None:
    async with triopycos.open_pycos(
        name="hello", node="127.0.0.1", tcp_port=0, discover_peers=False
    ):
        c = Task(counter)
        a = Task(asker, c)
        print(await a.finish())
        print(f"counter answered {await c.finish()} messages")


if __name__ == "__main__":
    trio.run(main)
