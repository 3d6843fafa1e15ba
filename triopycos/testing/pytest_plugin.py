"""Pytest fixtures for tests on the virtual network (pytest-trio required).

Enable them in a ``conftest.py``::

    pytest_plugins = ["triopycos.testing.pytest_plugin"]

or import them into a test module (``from triopycos.testing.pytest_plugin import
virtual_network, virtual_network_encode_local, virtual_network_seed``).  Then::

    async def test_two_nodes(virtual_network: VirtualNetwork,
                             autojump_clock: trio.testing.MockClock) -> None:
        async with virtual_network.open_pycos(name="a") as a, ...

Override ``virtual_network_seed`` (a fixture, or
``@pytest.mark.parametrize("virtual_network_seed", [1, 2, 3])``) to change the seed,
and ``virtual_network_encode_local`` (False unless overridden) to make the nodes
encode local messages too (``VirtualNetwork(encode_local=...)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._network import VirtualNetwork

__all__ = ["virtual_network", "virtual_network_encode_local", "virtual_network_seed"]


@pytest.fixture
def virtual_network_seed() -> int:
    """The seed of the ``virtual_network`` fixture (0 unless overridden)."""
    return 0


@pytest.fixture
def virtual_network_encode_local() -> bool:
    """``encode_local`` of the ``virtual_network`` fixture (False unless overridden)."""
    return False


@pytest.fixture
async def virtual_network(
    virtual_network_seed: int, virtual_network_encode_local: bool
) -> AsyncIterator[VirtualNetwork]:
    """A running ``VirtualNetwork`` seeded with ``virtual_network_seed``."""
    async with VirtualNetwork(
        seed=virtual_network_seed, encode_local=virtual_network_encode_local
    ) as net:
        yield net
