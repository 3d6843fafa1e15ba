"""``VirtualNetwork``: an in-memory network of virtual hosts for deterministic tests.

Shape::

    async with VirtualNetwork(seed=1) as net      one nursery: the timer task
    ├─ subnets → hosts (fake IPv4 + IPv6 addresses, port tables)
    ├─ transports (one per node: streams, listeners, UDP sockets it owns)
    └─ faults: cut host pairs (partition), frozen hosts, per-link settings

Determinism: every delivery is made by one timer task in (time, sequence) order, or
synchronously by the sender when the link is instant; every random choice (jitter,
loss, duplication) comes from one ``random.Random(seed)``, drawn in the order the
traffic was sent; ports are handed out in order.  What is left is trio's own
scheduler, which the network seeds with the same seed while it runs (see
``_scheduling.py``).  Time is trio time, so ``MockClock(autojump_threshold=0)`` runs a
minute of heartbeats in milliseconds.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import ParkingLot

from .._node import Pycos
from .._node_open import open_pycos
from ..services.limits import Limits
from ._common import LOOPBACK, LinkConfig, NetEvent, family_of, parse_ip
from ._hosts import Subnet, VirtualHost
from ._scheduling import deterministic_scheduling
from ._transport import VirtualTransport

if TYPE_CHECKING:
    from ._stream import _Pipe

__all__ = ["NodeRef", "VirtualNetwork"]

NodeRef = Pycos | VirtualHost | str
"""A node (its host is found by ``pycos.location.addr``), a host, or an address."""


class VirtualNetwork:
    """An in-memory network; use it as ``async with VirtualNetwork(seed=1) as net``.

    ``link`` is the default ``LinkConfig`` of every link between two hosts (a host
    talking to itself is always instant and lossless unless ``set_link`` says
    otherwise).  ``stream_buffer`` bounds the bytes in flight plus unread per stream
    direction; ``udp_queue`` the datagrams waiting in one UDP socket.  With
    ``seed_scheduler`` (the default) trio's scheduler is seeded with ``seed`` while the
    network runs, so the same seed gives the same ``events``.  ``encode_local``
    is the default of ``open_pycos(encode_local=...)`` for the nodes opened on it:
    with True, messages between tasks of one node go through the codec as a peer's
    would, so a test of one node catches what cannot cross the wire.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        link: LinkConfig | None = None,
        stream_buffer: int = 256 * 1024,
        udp_queue: int = 1024,
        seed_scheduler: bool = True,
        encode_local: bool = False,
    ) -> None:
        if stream_buffer < 1 or udp_queue < 1:
            raise ValueError("stream_buffer and udp_queue must be >= 1")
        self.seed = seed
        self.encode_local = encode_local
        self.rng = random.Random(seed)
        self.default_link = link if link is not None else LinkConfig()
        self.stream_buffer = stream_buffer
        self.udp_queue = udp_queue
        self.events: list[NetEvent] = []
        self.subnets: list[Subnet] = []
        self.hosts: list[VirtualHost] = []
        self._seed_scheduler = seed_scheduler
        self._by_addr: dict[str, VirtualHost] = {}
        self._by_name: dict[str, VirtualHost] = {}
        self._links: dict[tuple[int, int], LinkConfig] = {}
        self._cuts: set[frozenset[int]] = set()
        self._stalled: dict[_Pipe, None] = {}
        self._tx_free: dict[tuple[int, int], float] = {}
        self._link_lot = ParkingLot()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timer_lot = ParkingLot()
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self._scheduling: AbstractContextManager[None] | None = None
        self._t0 = 0.0
        self._node_transports: dict[Pycos, VirtualTransport] = {}
        self._nat: dict[str, VirtualHost] = {}  # public address -> the host behind it
        self._behind_nat: set[VirtualHost] = set()
        self.default_subnet = self.subnet("10.0.0.0/24", "fd00::/64", name="default")

    # -- running ------------------------------------------------------------------

    async def __aenter__(self) -> VirtualNetwork:
        if self._nursery_cm is not None:
            raise RuntimeError("this VirtualNetwork is already running")
        if self._seed_scheduler:
            self._scheduling = deterministic_scheduling(self.seed)
            self._scheduling.__enter__()
        self._t0 = trio.current_time()
        self._nursery_cm = trio.open_nursery()
        try:
            self._nursery = await self._nursery_cm.__aenter__()
            self._nursery.start_soon(self._run_timers, name="virtual network timers")
        except BaseException:
            self._nursery = self._nursery_cm = None
            self._restore_scheduling()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._nursery is not None and self._nursery_cm is not None
        try:
            # Whatever is still in flight is dropped.  The body's own exception is not
            # handed to the nursery, so it comes out as itself, never in a group.
            self._nursery.cancel_scope.cancel()
            await self._nursery_cm.__aexit__(None, None, None)
        finally:
            self._nursery = self._nursery_cm = None
            self._restore_scheduling()

    def _restore_scheduling(self) -> None:
        if self._scheduling is not None:
            scheduling, self._scheduling = self._scheduling, None
            scheduling.__exit__(None, None, None)

    async def _run_timers(self) -> None:
        timers = self._timers
        while True:
            if not timers:
                await self._timer_lot.park()
                continue
            if timers[0][0] > trio.current_time():
                with trio.move_on_at(timers[0][0]):
                    await self._timer_lot.park()
                continue
            now = trio.current_time()
            while timers and timers[0][0] <= now:
                heapq.heappop(timers)[2]()
            await trio.lowlevel.checkpoint()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn()`` from the timer task at trio time ``when`` (internal)."""
        if self._nursery is None:
            raise RuntimeError("the virtual network is not running: use `async with` it")
        heapq.heappush(self._timers, (when, next(self._timer_seq), fn))
        if self._timers[0][2] is fn:
            self._timer_lot.unpark_all()

    def record(self, kind: str, src: str, dst: str, nbytes: int) -> None:
        """Append a ``NetEvent`` (internal; tests read ``events``)."""
        try:
            now = trio.current_time() - self._t0
        except RuntimeError:  # configured before the trio run started
            now = 0.0
        # Rounded to the microsecond: two runs that start at different clock readings
        # compute the same instants with different last bits.
        self.events.append(NetEvent(round(now, 6), kind, src, dst, nbytes))

    # -- topology -----------------------------------------------------------------

    def subnet(
        self, ipv4: str | None = None, ipv6: str | None = None, *, name: str | None = None
    ) -> Subnet:
        """Add a subnet (a broadcast domain).  Without prefixes the next free pair is
        used: ``10.0.N.0/24`` and ``fd00:0:0:N::/64``."""
        n = len(self.subnets)
        net4 = ipaddress.IPv4Network(ipv4 if ipv4 is not None else f"10.0.{n}.0/24")
        net6 = ipaddress.IPv6Network(ipv6 if ipv6 is not None else f"fd00:0:0:{n:x}::/64")
        for other in self.subnets:
            if net4.overlaps(other.ipv4) or net6.overlaps(other.ipv6):
                raise ValueError(f"{net4} / {net6} overlaps subnet {other.name}")
        made = Subnet(name if name is not None else f"net{n}", net4, net6)
        self.subnets.append(made)
        return made

    def add_host(self, name: str | None = None, *, subnet: Subnet | None = None) -> VirtualHost:
        """A new host with the next free addresses of ``subnet`` (default subnet:
        ``10.0.0.0/24`` and ``fd00::/64``)."""
        subnet = subnet if subnet is not None else self.default_subnet
        if subnet not in self.subnets:
            raise ValueError(f"{subnet!r} is not a subnet of this network")
        index = len(self.hosts) + 1
        if name is None or name in self._by_name or parse_ip(name) is not None:
            name = f"h{index}"
        ipv4, ipv6 = subnet._allocate()
        host = VirtualHost(self, index, name, subnet, ipv4, ipv6)
        self.hosts.append(host)
        subnet.hosts.append(host)
        self._by_addr[ipv4] = self._by_addr[ipv6] = host
        self._by_name[name] = host
        return host

    def find_host(self, addr: str) -> VirtualHost | None:
        """The host with address (or name) ``addr``, if any."""
        ip = parse_ip(addr)
        return self._by_addr.get(str(ip)) if ip is not None else self._by_name.get(addr)

    def resolve(self, text: str) -> tuple[VirtualHost, str]:
        """(host, its canonical address) for an address or host name; ``OSError``
        (no route to host) when no host of the network has it."""
        host = self.find_host(text)
        if host is None:
            raise OSError(errno.EHOSTUNREACH, f"no route to host {text!r}")
        ip = parse_ip(text)
        return host, str(ip) if ip is not None else host.ipv4

    def nat(self, host: NodeRef, public_ipv4: str, public_ipv6: str | None = None) -> None:
        """Put ``host`` behind a NAT gateway with the public address(es) given.

        Hosts on other subnets reach it only through its public address (streams and
        datagrams sent there arrive at its own address, any port: a full port
        forward); its own addresses are unreachable from there.  Hosts on its subnet
        reach it directly.  Source addresses of what it sends are not rewritten.
        """
        target = self.host(host)
        for public in (public_ipv4, public_ipv6):
            if public is None:
                continue
            ip = parse_ip(public)
            if ip is None or ip.is_multicast or str(ip) in self._by_addr or str(ip) in self._nat:
                raise ValueError(f"{public!r} is not a free unicast address")
            self._nat[str(ip)] = target
        self._behind_nat.add(target)

    def route(self, src: VirtualHost, text: str) -> tuple[VirtualHost, str]:
        """Like ``resolve``, as seen from ``src``: through NAT gateways (internal)."""
        ip = parse_ip(text)
        if ip is not None and str(ip) in self._nat:
            host = self._nat[str(ip)]
            return host, host.address(family_of(str(ip)))
        host, addr = self.resolve(text)
        if host in self._behind_nat and host.subnet is not src.subnet:
            raise OSError(errno.EHOSTUNREACH, f"no route to host {text!r} (behind NAT)")
        return host, addr

    def host(self, ref: NodeRef) -> VirtualHost:
        """The host of a node (by ``pycos.location.addr``), a host, or an address."""
        if isinstance(ref, VirtualHost):
            if ref.net is not self:
                raise ValueError(f"{ref!r} belongs to another network")
            return ref
        if isinstance(ref, Pycos) and ref in self._node_transports:
            return self._node_transports[ref].host
        addr = ref.location.addr if isinstance(ref, Pycos) else ref
        found = self.find_host(addr) or self._nat.get(addr)
        if found is None:
            raise ValueError(f"{ref!r} is not on this virtual network")
        return found

    def _hosts_of(self, group: NodeRef | Iterable[NodeRef]) -> list[VirtualHost]:
        refs = [group] if isinstance(group, Pycos | VirtualHost | str) else list(group)
        found: dict[VirtualHost, None] = {}
        for ref in refs:
            found[self.host(ref)] = None
        return list(found)

    # -- nodes --------------------------------------------------------------------

    @asynccontextmanager
    async def open_pycos(
        self,
        *,
        name: str | None = None,
        node: str | Sequence[str] | None = None,
        tcp_port: int | None = 0,
        discover_peers: bool = False,
        secret: str = "",
        socket_family: int | None = None,
        limits: Limits | None = None,
        peer_timeout: float | None = None,
        subnet: Subnet | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Pycos]:
        """``triopycos.open_pycos`` on this network.

        Without ``node`` the node gets a new host (on ``subnet``) and listens on its
        IPv4 address (IPv6 with ``socket_family=socket.AF_INET6``); with ``node`` it
        runs on the existing host with that address.  Other arguments go to
        ``open_pycos``; ``tcp_port`` defaults to 0 and ``discover_peers`` to False.
        """
        if "transport" in kwargs:
            raise TypeError("net.open_pycos provides the transport itself")
        if node is None:
            host = self.add_host(name, subnet=subnet)
            where: str | list[str] = host.address(socket_family or socket.AF_INET)
        else:
            texts = [node] if isinstance(node, str) else list(node)
            resolved = [self.resolve(text) for text in texts]
            host = resolved[0][0]
            if any(h is not host for h, _ in resolved):
                raise ValueError(f"node addresses {texts} are not all on one virtual host")
            if subnet is not None and host.subnet is not subnet:
                raise ValueError(f"{node!r} is not on subnet {subnet.name}")
            addrs = [addr for _, addr in resolved]
            where = addrs[0] if isinstance(node, str) else addrs
        timeout = (limits if limits is not None else Limits()).connect_timeout
        transport = VirtualTransport(self, host, connect_timeout=timeout)
        async with open_pycos(
            name=name,
            node=where,
            tcp_port=tcp_port,
            discover_peers=discover_peers,
            secret=secret,
            socket_family=socket_family,
            limits=limits,
            peer_timeout=peer_timeout,
            transport=transport,
            node_id=kwargs.pop("node_id", None) or self.rng.randbytes(16),
            encode_local=kwargs.pop("encode_local", self.encode_local),
            **kwargs,
        ) as pycos:
            self._node_transports[pycos] = transport
            try:
                yield pycos
            finally:
                del self._node_transports[pycos]

    # -- links and faults ---------------------------------------------------------

    def link_config(self, src: VirtualHost, dst: VirtualHost) -> LinkConfig:
        default = LOOPBACK if src is dst else self.default_link
        return self._links.get((src.index, dst.index), default)

    def link(self, a: NodeRef, b: NodeRef) -> LinkConfig:
        """The settings of the link from ``a``'s host to ``b``'s."""
        return self.link_config(self.host(a), self.host(b))

    def set_link(
        self,
        a: NodeRef | Iterable[NodeRef],
        b: NodeRef | Iterable[NodeRef],
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: float | None = None,
        loss: float = 0.0,
        duplication: float = 0.0,
        both_ways: bool = True,
    ) -> None:
        """Set every field of the links from ``a``'s hosts to ``b``'s (and back,
        unless ``both_ways=False``).  Affects what is sent from now on."""
        config = LinkConfig(latency, jitter, bandwidth, loss, duplication)
        hosts_a, hosts_b = self._hosts_of(a), self._hosts_of(b)
        for ha in hosts_a:
            for hb in hosts_b:
                self._links[ha.index, hb.index] = config
                if both_ways:
                    self._links[hb.index, ha.index] = config
        self.record("link", _names(hosts_a), _names(hosts_b), 0)

    def partition(
        self, group_a: NodeRef | Iterable[NodeRef], group_b: NodeRef | Iterable[NodeRef]
    ) -> None:
        """Cut every link between a host of ``group_a`` and one of ``group_b``.

        Nothing crosses and nothing fails: streams stall silently (bytes wait, then
        ``send_all`` blocks when the buffer is full), new connections hang until
        their connect timeout, datagrams are dropped.  Heartbeats notice after
        ``peer_timeout``."""
        hosts_a, hosts_b = self._hosts_of(group_a), self._hosts_of(group_b)
        if set(hosts_a) & set(hosts_b):
            raise ValueError("a host cannot be on both sides of a partition")
        for ha in hosts_a:
            for hb in hosts_b:
                self._cuts.add(frozenset((ha.index, hb.index)))
        self.record("partition", _names(hosts_a), _names(hosts_b), 0)

    def heal(
        self,
        group_a: NodeRef | Iterable[NodeRef] | None = None,
        group_b: NodeRef | Iterable[NodeRef] | None = None,
    ) -> None:
        """Undo partitions: all of them, or those between ``group_a`` and
        ``group_b``.  Stalled bytes are delivered at once, in order (a real TCP
        would have retransmitted them); closes and resets that were stalled follow."""
        if group_a is None or group_b is None:
            self._cuts.clear()
            self.record("heal", "", "", 0)
        else:
            hosts_a, hosts_b = self._hosts_of(group_a), self._hosts_of(group_b)
            for ha in hosts_a:
                for hb in hosts_b:
                    self._cuts.discard(frozenset((ha.index, hb.index)))
            self.record("heal", _names(hosts_a), _names(hosts_b), 0)
        self._faults_changed()

    def crash(self, node: NodeRef, *, silent: bool = False) -> None:
        """Crash a node abruptly: its streams are reset (peers see it one latency
        later, at once on an instant link), its listeners and UDP sockets close, and
        the node is stopped with ``terminate()``.  Given a host or an address, every
        node on that host crashes.  Like ``terminate()``, this cancels the code inside
        the node's ``async with`` block at its next checkpoint.  ``silent=True`` is a
        machine that lost power: no reset leaves it, so its peers notice only by
        their heartbeat timeouts."""
        host = self.host(node)
        known = self._node_transports.get(node) if isinstance(node, Pycos) else None
        targets = [known] if known is not None else [t for t in host.transports if t.alive]
        where = str(node.location) if isinstance(node, Pycos) else host.ipv4
        self.record("crash", where, "", 0)
        for transport in targets:
            transport.kill(silent=silent)
        for pycos, transport in list(self._node_transports.items()):
            if transport in targets:
                pycos.terminate()
        if isinstance(node, Pycos) and known is None:
            node.terminate()

    def freeze(self, node: NodeRef) -> None:
        """Silence ``node``'s host: nothing from or to it is delivered and nothing
        fails, like a hung machine (its own timers still run, so it also stops
        hearing its peers).  Bytes wait; datagrams are dropped."""
        host = self.host(node)
        host.frozen = True
        self.record("freeze", host.ipv4, "", 0)

    def thaw(self, node: NodeRef) -> None:
        """Undo ``freeze``: the host speaks again and stalled bytes flow."""
        host = self.host(node)
        host.frozen = False
        self.record("thaw", host.ipv4, "", 0)
        self._faults_changed()

    # -- used by pipes and transports ----------------------------------------------

    def transmit(self, src: VirtualHost, dst: VirtualHost, size: int) -> float:
        """When ``size`` bytes sent now have crossed the link's bandwidth: all traffic
        from ``src`` to ``dst`` shares it, one byte after another."""
        now = trio.current_time()
        bandwidth = self.link_config(src, dst).bandwidth
        if bandwidth is None:
            return now
        key = (src.index, dst.index)
        done = max(now, self._tx_free.get(key, now)) + size / bandwidth
        self._tx_free[key] = done
        return done

    def link_open(self, a: VirtualHost, b: VirtualHost) -> bool:
        if a.frozen or b.frozen:
            return False
        return a is b or frozenset((a.index, b.index)) not in self._cuts

    async def wait_link_open(self, a: VirtualHost, b: VirtualHost) -> None:
        while not self.link_open(a, b):
            await self._link_lot.park()

    def stall(self, pipe: _Pipe) -> None:
        self._stalled[pipe] = None

    def _faults_changed(self) -> None:
        self._link_lot.unpark_all()
        stalled, self._stalled = self._stalled, {}
        for pipe in stalled:
            pipe.pump()  # stalls again if its link is still cut


def _names(hosts: list[VirtualHost]) -> str:
    return ",".join(h.ipv4 for h in hosts)
