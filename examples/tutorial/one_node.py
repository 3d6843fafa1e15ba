"""Tutorial, step 1: one node, two tasks talking through their mailboxes.

Run: python examples/tutorial/one_node.py
"""

from __future__ import annotations

import trio

from triopycos import Task, open_pycos


async def greeter(task: Task) -> int:
    """Answers every (sender, name) it receives; stops at None."""
    task.register("greeter")
    greeted = 0
    while (msg := await task.receive()) is not None:
        sender, name = msg
        sender.send(f"hello, {name}!")
        greeted += 1
    return greeted


async def visitor(task: Task, greeter: Task) -> None:
    greeter.send((task, "visitor"))  # queued: 0
    print(await task.receive(timeout=5))
    delivered = await greeter.deliver((task, "again"), timeout=5)  # 1: in its mailbox
    print("deliver returned", delivered, "and the answer was", repr(await task.receive(timeout=5)))


async def main() -> None:
    # A node of its own on 127.0.0.1, reachable by no one else yet.
    async with open_pycos(name="solo", node="127.0.0.1", tcp_port=0, discover_peers=False):
        g = Task(greeter)
        await Task(visitor, g).finish()
        g.send(None)
        print("the greeter greeted", await g.finish(), "times")


if __name__ == "__main__":
    trio.run(main)
