"""Helpers shared by the tests that run real nodes on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import trio

from triopycos import Pycos, open_pycos

__all__ = ["loopback_node", "wait_for"]


def loopback_node(name: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Pycos]:
    """A node on 127.0.0.1, any free port, no discovery (``kwargs`` override)."""
    args: dict[str, Any] = {
        "name": name,
        "node": "127.0.0.1",
        "tcp_port": 0,
        "discover_peers": False,
        "secret": "test-secret",
    }
    return open_pycos(**(args | kwargs))


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds (for what has no event to wait on: the file
    system, another process, another node's counters), at most ``timeout`` s."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)
