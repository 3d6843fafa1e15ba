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
# A test taking ``cluster`` and ``clock`` runs three times: on real loopback TCP (real
# clock), on loopback TCP with TLS (every node with a certificate of one test CA), and
# on the virtual network (autojump mock clock).  ``clock`` must be a parameter of
# the test itself: that is how pytest-trio picks the clock.

import ssl  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager  # noqa: E402
from typing import Any  # noqa: E402

import trio  # noqa: E402
import trio.testing  # noqa: E402
import trustme  # noqa: E402

from triopycos import Location, Pycos, open_pycos  # noqa: E402
from triopycos.testing import VirtualNetwork  # noqa: E402
from triopycos.transport.tls import tls_contexts  # noqa: E402
from triopycos.transport.tls_stream import TLSStream  # noqa: E402


class Nodes(list[Pycos]):
    """The cluster's nodes.

    ``open(name, **kwargs)`` starts one more on the same network (``kwargs`` override
    the cluster's arguments, e.g. ``secret``, or ``node`` and ``tcp_port`` to restart
    a node where it was); ``open_stream(location)`` connects a raw stream to a node
    from outside the cluster (for hostile or silent peers); ``net`` is the virtual
    network, or None on TCP (fault injection and mock-clock timings check it).
    """

    open: Callable[..., AbstractAsyncContextManager[Pycos]]
    net: VirtualNetwork | None
    tls: ssl.SSLContext | None  # the client context of a TLS cluster

    @property
    def virtual(self) -> bool:
        return self.net is not None

    async def open_stream(self, location: Location) -> trio.abc.Stream:
        if self.net is None:
            stream = await trio.open_tcp_stream(location.addr, location.port)
            if self.tls is None:
                return stream
            return TLSStream(stream, self.tls, server_side=False)
        return await self.net.add_host().transport().open_stream(location.addr, location.port)


Cluster = Callable[..., AbstractAsyncContextManager[Nodes]]

SECRET = "test-secret"  # the secret of every node of a cluster (unless overridden)
LIMIT = {"tcp": 10, "tls": 20, "virtual": 600}  # seconds a cluster may stay open: real, virtual


@pytest.fixture(params=["tcp", "tls", "virtual"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(transport_kind: str) -> trio.testing.MockClock | None:
    return trio.testing.MockClock(autojump_threshold=0) if transport_kind == "virtual" else None


@pytest.fixture(scope="session")
def cluster_certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One test CA and one certificate every node of a TLS cluster presents."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    where = tmp_path_factory.mktemp("cluster-tls")
    files = {
        "certfile": where / "node.pem",
        "keyfile": where / "node.key",
        "cafile": where / "ca.pem",
    }
    leaf.cert_chain_pems[0].write_to_path(str(files["certfile"]))
    leaf.private_key_pem.write_to_path(str(files["keyfile"]))
    ca.cert_pem.write_to_path(str(files["cafile"]))
    return {key: str(path) for key, path in files.items()}


@pytest.fixture
def cluster(transport_kind: str, cluster_certificates: dict[str, str]) -> Cluster:
    """``async with cluster("a", "b", peered=True) as (a, b)``: nodes named so, each
    later one peered with the first (and both sides seeing each other) if asked;
    ``kwargs`` go to every node.  The block fails if it is still open after ``LIMIT``
    seconds (real ones on TCP, virtual ones on the virtual network)."""

    @asynccontextmanager
    async def open_cluster(*names: str, peered: bool = True, **kwargs: Any) -> AsyncIterator[Nodes]:
        args: dict[str, Any] = {"secret": SECRET, "discover_peers": False} | kwargs
        async with AsyncExitStack() as stack:
            stack.enter_context(trio.fail_after(LIMIT[transport_kind]))
            net: VirtualNetwork | None = None
            tls: ssl.SSLContext | None = None
            if transport_kind != "virtual":
                where: dict[str, Any] = {"node": "127.0.0.1", "tcp_port": 0}
                if transport_kind == "tls":
                    where |= cluster_certificates
                    tls = tls_contexts(**cluster_certificates)[1]

                def start(name: str, **more: Any) -> AbstractAsyncContextManager[Pycos]:
                    return open_pycos(**(where | args | more), name=name)
            else:
                net = await stack.enter_async_context(VirtualNetwork(seed=7))

                def start(name: str, **more: Any) -> AbstractAsyncContextManager[Pycos]:
                    assert net is not None
                    return net.open_pycos(**(args | more), name=name)

            nodes = Nodes([await stack.enter_async_context(start(name)) for name in names])
            nodes.open = start
            nodes.net = net
            nodes.tls = tls
            if peered:
                first, *others = nodes
                for node in others:
                    assert await node.peer(first.location) == 0
                    assert await first.locate(node.name, timeout=5) == node.location
            yield nodes

    return open_cluster
