"""``open_pycos``: running a node for the duration of an ``async with`` block.

Nursery tree of a node::

    open_pycos()             root nursery: its cancel scope is ``terminate()``
    ├─ tasks                 the task nursery (every Task, each in its own
    │                        CancelScope) and the timer of their timeouts
    └─ network               peers, listener, discovery (``_node_network.py``)

Each of the two is supervised: its failure comes out as one ``ServiceError`` naming
it.  Leaving the block waits for the non-daemon tasks, ends the others, says goodbye
to the peers, then cancels the services.  What leaves the block: an exception of the
block itself as itself (not in an ``ExceptionGroup``), a service failure as its
``ServiceError``, interpreter exits first.

``open_pycos`` checks its arguments into a ``NodeConfig``; ``open_node`` runs a node
from one (the compat facade builds its own with ``NodeConfig.build``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from ._context import current_node_var
from ._dest_path import make_private
from ._exception_groups import exception_leaves
from ._hostaddr import default_host
from ._node import Pycos
from ._node_config import NodeConfig
from .services.limits import Limits
from .transport import Transport
from .transport.errors import TransportError
from .values import Location, PycosError, ServiceError

__all__ = ["open_node", "open_pycos"]


@asynccontextmanager
async def open_pycos(
    udp_port: int = 9705,
    tcp_port: int | None = None,
    node: str | Sequence[str] | None = None,
    ext_ip_addr: str | Sequence[str] | None = None,
    socket_family: int | None = None,
    ipv4_udp_multicast: bool = False,
    name: str | None = None,
    discover_peers: bool = True,
    secret: str = "",
    certfile: str | None = None,
    keyfile: str | None = None,
    dest_path: str | os.PathLike[str] | None = None,
    max_file_size: int | None = None,
    *,
    dest_path_prefix: str | os.PathLike[str] | None = None,
    transport: Transport | None = None,
    limits: Limits | None = None,
    peer_timeout: float | None = None,
    node_id: bytes | None = None,
    cafile: str | os.PathLike[str] | None = None,
    announce_interval: float | None = 30.0,
    encode_local: bool = False,
) -> AsyncIterator[Pycos]:
    """Run a node for the duration of the block; yields its ``Pycos``.

    Arguments are the spec's ``Pycos`` constructor's (``dest_path_prefix`` is accepted
    as an alias of ``dest_path``).  Leaving the block normally waits for the node's
    non-daemon tasks (a warning on the ``triopycos`` logger names those still running
    after 10 s of trio time, and again at growing intervals), then cancels its daemon
    tasks; an exception in the block cancels every task and comes out as itself;
    ``pycos.terminate()`` cancels everything at once.

    Keyword-only extras: ``limits`` (a ``Limits``), ``peer_timeout`` (seconds of
    silence after which a peer is taken for gone; default 15, heartbeats go out every
    third of it on idle connections) and ``transport`` (TCP by default; the virtual
    network of ``triopycos.testing`` is another).  ``node_id`` (16 bytes) replaces
    the random incarnation id; the virtual network uses it so runs are reproducible.
    ``certfile`` (with ``keyfile`` if the key is in its own file, and ``cafile``, the
    certificates to trust; default: ``certfile`` itself) puts every peer connection
    in TLS that authenticates both sides.  ``announce_interval``: with discovery, the
    node announces itself when it starts, again after 1, 2, 4... seconds and then
    every ``announce_interval`` seconds (None or 0: only once).

    Messages between tasks of one node are handed over by reference, never encoded,
    so a message that cannot cross the wire (a function, an open file, a lock) works
    locally and fails only once the program is distributed.  ``encode_local=True``
    (for tests) sends every local message, and the arguments of local RPS calls,
    through the codec as a peer would get them: what cannot travel raises
    ``TypeError``/``ValueError`` at the send, and receivers get copies.
    """
    config = NodeConfig.build(
        udp_port,
        tcp_port,
        node,
        ext_ip_addr,
        socket_family,
        ipv4_udp_multicast,
        name,
        discover_peers,
        secret,
        certfile,
        keyfile,
        dest_path,
        max_file_size,
        dest_path_prefix=dest_path_prefix,
        transport=transport,
        limits=limits,
        peer_timeout=peer_timeout,
        node_id=node_id,
        cafile=cafile,
        announce_interval=announce_interval,
        encode_local=encode_local,
    )
    async with open_node(config) as pycos:
        yield pycos


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Pycos]:
    """Run a node configured by ``config`` for the duration of the block (see the
    module docstring)."""
    hosts = config.hosts or (await _default_host(config.socket_family),)
    if config.dest_path_is_default:
        # A few system calls, made here in the trio thread: a worker thread would
        # let an autojump clock jump meanwhile, and virtual-network runs would no
        # longer repeat.
        make_private(config.dest_path)
    pycos = Pycos(config, Location(hosts[0], config.tcp_port or 0))
    try:
        async with trio.open_nursery() as root:
            pycos._run_in(root.cancel_scope)
            await root.start(_supervised, "tasks", pycos._serve_tasks)
            await root.start(_supervised, "network", pycos._serve_network, hosts)
            token = current_node_var.set(pycos)
            try:
                yield pycos
                await pycos._finish_on_leaving()
            finally:
                current_node_var.reset(token)
                await pycos._close()
                root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        surfaced = _surface(group)
        # Without the group as context, but with the exception's own cause (a
        # ServiceError's is the service's failure).
        raise surfaced from surfaced.__cause__


async def _supervised(
    name: str,
    service: Callable[..., Awaitable[None]],
    *args: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node service; its failure comes out as a ServiceError naming it."""
    try:
        await service(*args, task_status=task_status)
    except Exception as exc:
        reason = _reason(exc)
        raise ServiceError(name, reason) from reason


def _reason(exc: Exception) -> BaseException:
    """What a service's ``ServiceError`` says failed: the one failure inside nested
    nurseries' groups rather than the groups, and a transport error (already a
    sentence that says where and why) as the library's own error, caused by the
    system's."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = exception_leaves(exc)
        if len(leaves) != 1:
            return exc
        exc = cast(Exception, leaves[0])
    if isinstance(exc, TransportError):
        mapped = PycosError(str(exc))
        mapped.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc
        return mapped
    return exc


def _surface(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What leaves ``open_pycos``: the body's own exception as itself, a service
    failure as one ServiceError, interpreter exits first."""
    leaves = exception_leaves(group)
    for kind in (KeyboardInterrupt, SystemExit, ServiceError):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    # Only the block itself can raise anything else: its exception, group or not.
    return group.exceptions[0] if len(group.exceptions) == 1 else group


async def _default_host(family: int | None) -> str:
    """pycos's default node: this host's address (see ``_hostaddr``); a host whose
    address cannot be found is a clear error rather than a guess."""
    try:
        return await default_host(family)
    except OSError as exc:
        raise PycosError(f"cannot find this host's address ({exc}); pass node=...") from exc
