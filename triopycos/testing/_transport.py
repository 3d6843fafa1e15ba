"""``VirtualTransport``: the node's transport interface on the virtual network.

One transport is one "process" on a virtual host: it owns the streams, listeners
and UDP sockets it opened, so ``VirtualNetwork.crash`` can kill exactly those.

Connecting follows TCP closely enough for the node:

* an address nobody on the network has: ``OSError(EHOSTUNREACH)`` at once;
* a cut link (partition, freeze): the attempt hangs, like SYNs into a dead link,
  until the link is back or ``connect_timeout`` passes (``OSError(ETIMEDOUT)``);
* otherwise one latency to reach the host, where either a listener queues the new
  connection (the server side exists from then on) or the attempt is refused, and one
  latency back: ``ConnectionRefusedError`` or the connected stream.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._common import family_of, is_wildcard, label
from ._stream import VirtualStream, connect_pipes

if TYPE_CHECKING:
    from ._hosts import VirtualHost
    from ._network import VirtualNetwork
    from ._udp import VirtualUDPSocket

__all__ = ["VirtualListener", "VirtualTransport"]

_BACKLOG = 128


class VirtualListener(trio.abc.Listener[trio.abc.Stream]):
    """A listening port on a virtual host."""

    def __init__(self, transport: VirtualTransport, addr: str, port: int, family: int) -> None:
        self.transport = transport
        self.addr = addr
        self.port = port
        self.family = family
        self.closed = False
        self.backlog: deque[VirtualStream] = deque()
        self._lot = ParkingLot()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens; a wildcard bind reports the host's own address."""
        addr = self.transport.host.address(self.family) if is_wildcard(self.addr) else self.addr
        return addr, self.port

    def __repr__(self) -> str:
        return f"<VirtualListener {label(*self.address)}{' closed' if self.closed else ''}>"

    def enqueue(self, stream: VirtualStream) -> bool:
        if self.closed or len(self.backlog) >= _BACKLOG:
            return False
        self.backlog.append(stream)
        self._lot.unpark_all()
        return True

    async def accept(self) -> trio.abc.Stream:
        await checkpoint_if_cancelled()
        waited = False
        while not self.backlog:
            if self.closed:
                raise trio.ClosedResourceError("this listener was closed")
            await self._lot.park()
            waited = True
        if self.closed:
            raise trio.ClosedResourceError("this listener was closed")
        stream = self.backlog.popleft()
        if not waited:
            await cancel_shielded_checkpoint()
        return stream

    def close(self) -> None:
        """Stop listening now; connections not yet accepted are reset."""
        if self.closed:
            return
        self.closed = True
        host = self.transport.host
        if self in host.listeners:
            host.listeners.remove(self)
        self.transport._forget(self)
        pending, self.backlog = self.backlog, deque()
        for stream in pending:
            stream.reset()
        self._lot.unpark_all()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


class VirtualTransport:
    """Implements ``triopycos.transport.Transport`` (and UDP) on one virtual host."""

    def __init__(
        self, net: VirtualNetwork, host: VirtualHost, *, connect_timeout: float = 10.0
    ) -> None:
        self.net = net
        self.host = host
        self.connect_timeout = connect_timeout
        self.alive = True
        # Insertion-ordered, so a crash resets them in the same order in every run.
        self._owned: dict[VirtualStream | VirtualListener | VirtualUDPSocket, None] = {}
        host.transports.append(self)

    def __repr__(self) -> str:
        return f"<VirtualTransport on {self.host.name}{'' if self.alive else ' (killed)'}>"

    def _check_alive(self) -> None:
        if not self.alive:
            raise OSError(errno.ENETDOWN, f"transport on {self.host.name} was killed (crash)")

    def _own(self, obj: VirtualStream | VirtualListener | VirtualUDPSocket) -> None:
        self._owned[obj] = None

    def _forget(self, obj: VirtualStream | VirtualListener | VirtualUDPSocket) -> None:
        self._owned.pop(obj, None)

    # -- the Transport interface --------------------------------------------------

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port`` (see the module docstring for what can happen)."""
        self._check_alive()
        try:
            with trio.fail_after(self.connect_timeout):
                return await self._connect(host, port)
        except trio.TooSlowError:
            raise OSError(errno.ETIMEDOUT, f"connecting to {label(host, port)} timed out") from None

    async def open_listeners(
        self, host: str, port: int
    ) -> list[trio.abc.Listener[trio.abc.Stream]]:
        """Listen on ``host:port``: one of this host's addresses, or a wildcard
        (``""`` listens on both families, on one port).  Port 0: the next free port."""
        self._check_alive()
        await trio.lowlevel.checkpoint()
        me = self.host
        addrs = me.bind_address(host)
        if port == 0:
            port = me.ephemeral_tcp_port()
            while any(me.tcp_port_in_use(a, port) for a in addrs):
                port = me.ephemeral_tcp_port()
        elif any(me.tcp_port_in_use(a, port) for a in addrs):
            raise OSError(errno.EADDRINUSE, f"address already in use: {label(host, port)}")
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
        for addr in addrs:
            listener = VirtualListener(self, addr, port, family_of(addr))
            me.listeners.append(listener)
            self._own(listener)
            listeners.append(listener)
            self.net.record("listen", label(*listener.address), "", 0)
        return listeners

    def listener_address(self, listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int]:
        assert isinstance(listener, VirtualListener)
        return listener.address

    async def open_udp(self, host: str = "", port: int = 0) -> VirtualUDPSocket:
        """A UDP socket bound to ``host:port`` (see ``VirtualUDPSocket``)."""
        from ._udp import VirtualUDPSocket

        self._check_alive()
        await trio.lowlevel.checkpoint()
        sock = VirtualUDPSocket.bind(self, host, port)
        self._own(sock)
        return sock

    # -- crash --------------------------------------------------------------------

    def kill(self, *, silent: bool = False) -> None:
        """Kill the "process": reset every stream, close every listener and UDP
        socket.  Peers see the resets at once (one latency later); using the
        transport afterwards raises ``OSError``.  ``silent``: the machine died
        (power loss): streams vanish without a reset, peers see nothing."""
        self.alive = False
        for obj in list(self._owned):
            if isinstance(obj, VirtualStream):
                if silent:
                    obj.vanish()
                else:
                    obj.reset()
            else:
                obj.close()
        self._owned.clear()

    # -- connecting ---------------------------------------------------------------

    async def _connect(self, host: str, port: int) -> VirtualStream:
        net = self.net
        target, addr = net.route(self.host, host)
        family = family_of(addr)
        me = self.host
        local = (me.address(family), me.ephemeral_tcp_port())
        remote = (addr, port)
        await net.wait_link_open(me, target)
        there = net.link_config(me, target).latency
        back = net.link_config(target, me).latency
        if there:
            await trio.sleep(there)
            await net.wait_link_open(me, target)  # cut meanwhile: the SYN is retried
        self._check_alive()
        listener = target.find_listener(addr, port)
        client = server = None
        if listener is not None and listener.transport.alive:
            out, inbound = connect_pipes(net, me, local, target, remote, net.stream_buffer)
            server = VirtualStream(listener.transport, inbound, out, remote, local)
            client = VirtualStream(self, out, inbound, local, remote)
            if listener.enqueue(server):
                listener.transport._own(server)
                net.record("accept", label(*local), label(*remote), 0)
            else:
                client = server = None
        try:
            if back:
                await trio.sleep(back)
                await net.wait_link_open(me, target)
            else:
                await trio.lowlevel.checkpoint()
        except BaseException:
            if client is not None:
                client.reset()  # the server side was queued: it sees a reset
            raise
        if client is None:
            net.record("refused", label(*local), label(*remote), 0)
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"connection to {label(*remote)} refused"
            )
        self._own(client)
        if not self.alive:  # killed while the answer was on its way
            client.reset()
            self._check_alive()
        net.record("connect", label(*local), label(*remote), 0)
        return client
