"""Shared fixtures for the test suite.

Every test runs under the network guard (``tests/netguard.py``): in a test's trio
run, sockets may only bind, connect and send to 127.0.0.0/8 and ::1, and may not
broadcast or join multicast groups, unless the test is marked
``@pytest.mark.netns``.  See ``docs/testing.md``, "The network guard".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netguard import NetGuardPlugin


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(NetGuardPlugin(), "triopycos-netguard")


@pytest.fixture(autouse=True, scope="session")
def _data_home_of_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A node opened without ``dest_path`` makes its default folder under
    ``$XDG_DATA_HOME``: the suite's own folder (child processes inherit it), never
    the home of whoever runs the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
        yield


# -- clusters of nodes on either transport ------------------------------------------
#
# A test taking ``cluster`` and ``clock`` runs twice: on real loopback TCP (real clock)
# and on the virtual network (autojump mock clock).  ``clock`` must be a parameter of
# the test itself: that is how pytest-trio picks the clock.

from collections.abc import AsyncIterator, Callable  # noqa: E402
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager  # noqa: E402
from typing import Any  # noqa: E402

import trio.testing  # noqa: E402

from triopycos import Pycos, open_pycos  # noqa: E402
from triopycos.testing import VirtualNetwork  # noqa: E402


class Nodes(list[Pycos]):
    """The cluster's nodes; ``open(name)`` starts one more on the same network."""

    open: Callable[[str], AbstractAsyncContextManager[Pycos]]


Cluster = Callable[..., AbstractAsyncContextManager[Nodes]]


@pytest.fixture(params=["tcp", "virtual"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(transport_kind: str) -> trio.testing.MockClock | None:
    return trio.testing.MockClock(autojump_threshold=0) if transport_kind == "virtual" else None


@pytest.fixture
def cluster(transport_kind: str) -> Cluster:
    """``async with cluster("a", "b", peered=True) as (a, b)``: nodes named so, each
    later one peered with the first (and both sides seeing each other) if asked."""

    @asynccontextmanager
    async def open_cluster(*names: str, peered: bool = True, **kwargs: Any) -> AsyncIterator[Nodes]:
        args: dict[str, Any] = {"secret": "test-secret", "discover_peers": False} | kwargs
        async with AsyncExitStack() as stack:
            if transport_kind == "tcp":

                def start(name: str) -> AbstractAsyncContextManager[Pycos]:
                    return open_pycos(name=name, node="127.0.0.1", tcp_port=0, **args)
            else:
                net = await stack.enter_async_context(VirtualNetwork(seed=7))

                def start(name: str) -> AbstractAsyncContextManager[Pycos]:
                    return net.open_pycos(name=name, **args)

            nodes = Nodes([await stack.enter_async_context(start(name)) for name in names])
            nodes.open = start
            if peered:
                first, *others = nodes
                for node in others:
                    assert await node.peer(first.location) == 0
                    assert await first.locate(node.name, timeout=5) == node.location
            yield nodes

    return open_cluster
