"""Remote tasks, client side: locate a named task on another node, message and monitor it.

Run, in two terminals:

    python examples/remote_task_server.py
    python examples/remote_task_client.py --peer 127.0.0.1:9711 --stop

The client peers with the server's node, locates "task_server" there with
``Task.locate``, monitors it, and for each request: ``deliver`` (1 once the request
is in the server task's mailbox), then waits for the acknowledgement. With
``--stop`` it then sends "stop" and waits for the monitor's ``MonitorStatus``
saying how the server task ended. Without it, the server keeps serving other clients.

Prints ``peered with HOST:PORT``, ``located task_server at HOST:PORT``,
``deliver SEQ: 1`` and ``ack SEQ: REPLY`` per request, and with ``--stop``
``task_server returned N``. Exits with 0, or 1 if anything failed.
"""

from __future__ import annotations

import argparse

from _common import client_parser, describe_status, peered_node, run

from triopycos import Location, MonitorStatus, Task

PORT = 9711


async def client(task: Task, where: Location, count: int, stop: bool, timeout: float) -> int:
    server = await Task.locate("task_server", where, timeout=timeout)
    if server is None:
        print(f"task_server not found at {where}", flush=True)
        return 1
    print(f"located task_server at {server.location}", flush=True)
    # From now on, how the server task ends arrives here as a MonitorStatus message.
    if await task.monitor(server) != 0:
        print("could not monitor task_server", flush=True)
        return 1

    for seq in range(1, count + 1):
        request = {"client": task, "seq": seq, "text": f"hello {seq}"}
        delivered = await server.deliver(request, timeout=timeout)
        print(f"deliver {seq}: {delivered}", flush=True)
        if delivered != 1:
            return 1
        answer = await task.receive(timeout=timeout)
        if isinstance(answer, MonitorStatus):
            print(f"task_server {describe_status(answer)}", flush=True)
            return 1
        if answer is None:
            print(f"no acknowledgement of request {seq} within {timeout} s", flush=True)
            return 1
        print(f"ack {answer['seq']}: {answer['reply']!r}", flush=True)

    if stop:
        server.send("stop")  # queued at once; the monitor tells us what came of it
        status = await task.receive(timeout=timeout)
        if not isinstance(status, MonitorStatus):
            print(f"task_server did not end within {timeout} s", flush=True)
            return 1
        print(f"task_server {describe_status(status)}", flush=True)
    return 0


async def main(args: argparse.Namespace) -> int:
    async with peered_node(args) as pycos:
        if pycos is None:
            return 1
        work = pycos.spawn(client, args.peer, args.count, args.stop, args.timeout)
        result = await work.finish()
    return result if isinstance(result, int) else 1


def parser() -> argparse.ArgumentParser:
    parser = client_parser(__doc__, peer_port=PORT)
    parser.add_argument("--count", type=int, default=3, help="requests to send (default: 3)")
    parser.add_argument("--stop", action="store_true", help="stop the server task at the end")
    return parser


if __name__ == "__main__":
    run(main, parser())
