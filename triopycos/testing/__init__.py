"""Testing tools: ``VirtualNetwork``, an in-memory network on which many nodes run in
one process, deterministically, with faults injected (see
``docs/testing-your-program.md``).

Pytest fixtures live in ``triopycos.testing.pytest_plugin`` (it imports pytest, so
it is not imported here).
"""

from .. import _public_paths
from ._common import LinkConfig, NetEvent
from ._hosts import Subnet, VirtualHost
from ._network import NodeRef, VirtualNetwork
from ._scheduling import deterministic_scheduling
from ._stream import VirtualStream
from ._transport import VirtualListener, VirtualTransport
from ._udp import VirtualUDPSocket

__all__ = [
    "LinkConfig",
    "NetEvent",
    "NodeRef",
    "Subnet",
    "VirtualHost",
    "VirtualListener",
    "VirtualNetwork",
    "VirtualStream",
    "VirtualTransport",
    "VirtualUDPSocket",
    "deterministic_scheduling",
]

_public_paths(globals(), __all__, __name__)
