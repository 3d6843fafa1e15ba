"""Small networks of Linux network namespaces, for tests marked ``@pytest.mark.netns``.

Those tests are exempt from the network guard, because all their traffic stays
inside namespaces they created (see ``docs/testing.md``).  This module builds the
namespaces, and removes them again when the ``async with`` block ends, even on
failure or cancellation.

* :func:`open_lan` builds one LAN: a hub namespace holding a bridge ``br0`` and
  ``hosts`` host namespaces, each with a veth ``eth0`` whose peer is a port of the
  bridge.  Host ``i`` gets ``{subnet4}.{i + 1}/24`` and ``{subnet6}{i + 1}/64``.
  There are no default routes; broadcast and multicast work on the LAN
  (255.255.255.255 only from a socket bound to the host's own address).
* :func:`open_network` builds several LANs joined by a router namespace that
  forwards unicast IPv4 and IPv6 between them; broadcast and multicast stay on
  each LAN.  LANs listed in ``nat`` are private: their hosts are reachable from the
  other LANs only at a public address on LAN 0 (:attr:`NetnsHost.public_ipv4`,
  :attr:`NetnsHost.public_ipv6`), which the router translates (1:1 NAT, both
  directions: a private host's own connections out appear to come from its public
  address).

Start processes in a host with ``open_node_process(argv, node=host.ipv4,
netns=host.netns)`` (``tests/procs.py``).  Example::

    pytestmark = [pytest.mark.netns, needs_netns]

    async def test_something() -> None:
        async with open_lan(2) as lan:
            a, b = lan.hosts
            async with open_node_process(["-c", code], node=a.ipv4, netns=a.netns):
                ...

What works on a LAN (no default route; checked on Linux 6.18):

* Broadcast: ``SO_BROADCAST``, socket bound to the host's own address, to
  ``255.255.255.255`` or :attr:`Lan.broadcast4`; every socket bound to
  ``("0.0.0.0", port)`` with ``SO_REUSEADDR`` + ``SO_REUSEPORT`` on every host gets
  a copy, the sender's own host included.  Bound to ``0.0.0.0``, sending to
  ``255.255.255.255`` fails with ENETUNREACH (the subnet broadcast still works).
* IPv4 multicast: join with ``IP_ADD_MEMBERSHIP`` giving the host's address as
  the interface (``INADDR_ANY`` fails with ENODEV: no route to pick one); send
  with ``IP_MULTICAST_IF`` = own address (or from a socket bound to it).
* IPv6 multicast (``ff02::``/``ff05::`` alike): ``IPV6_JOIN_GROUP`` and
  ``IPV6_MULTICAST_IF`` with :attr:`NetnsHost.ifindex` (0 works too while the
  host has only one interface).
* Unicast to a port shared with ``SO_REUSEPORT`` reaches one socket (by hash).

The router's NAT is nftables, written as raw netlink messages: no ``nft`` binary
is needed, but the kernel needs nf_tables NAT (``CONFIG_NFT_NAT``, as distribution
kernels have); without it only ``nat=`` networks fail (:class:`NetnsError`).
Stateless ``tc`` NAT (``act_nat``) is not used: kernels often lack it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import sys
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

__all__ = [
    "Lan",
    "NetnsError",
    "NetnsHost",
    "Network",
    "needs_netns",
    "netns_available",
    "open_lan",
    "open_network",
]

NETNS_DIR = Path("/run/netns")
HOST_IFNAME = "eth0"
MAX_HOSTS = 199  # per LAN: .200-.253 are public (NAT) addresses, .254 is the router
_ROUTER_HOST = 254
_PUBLIC_BASE = 200
_SETUP_TIMEOUT = 60.0
_CLEANUP_TIMEOUT = 30.0


def netns_available() -> bool:
    """Whether namespaces can be built here: running as root, with ``ip`` (iproute2)."""
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("ip") is not None


needs_netns = pytest.mark.skipif(
    not netns_available(), reason="needs root and iproute2 to build network namespaces"
)
"""Skip marker for tests building namespaces; use it with ``pytest.mark.netns``."""


class NetnsError(RuntimeError):
    """A command building or removing the namespaces failed."""


@dataclass(frozen=True)
class NetnsHost:
    """One host namespace: its name, its interface and its addresses (as strings)."""

    netns: str
    ipv4: str
    ipv6: str
    ifname: str
    ifindex: int
    lan: int
    """Index of the host's LAN in :attr:`Network.lans`."""
    public_ipv4: str | None = None
    """On a NAT'ed LAN: the address (on LAN 0) at which the other LANs reach the host."""
    public_ipv6: str | None = None


@dataclass(frozen=True)
class Lan:
    """One bridged LAN: its hub namespace (holding ``br0``), hosts and subnets."""

    index: int
    netns: str
    hosts: list[NetnsHost]
    subnet4: str
    subnet6: str
    broadcast4: str
    router_ipv4: str | None = None
    """The router's address on this LAN (hosts route to the other LANs through it)."""
    router_ipv6: str | None = None
    private: bool = False
    """Behind the router's NAT: reachable from other LANs only at public addresses."""


@dataclass(frozen=True)
class Network:
    """LANs, the router namespace joining them (if any), and every namespace built."""

    lans: list[Lan]
    router: str | None
    namespaces: list[str] = field(default_factory=list)

    @property
    def hosts(self) -> list[NetnsHost]:
        """All hosts, LAN by LAN."""
        return [host for lan in self.lans for host in lan.hosts]


@dataclass(frozen=True)
class _LanPlan:
    hosts: int
    subnet4: ipaddress.IPv4Network
    subnet6: ipaddress.IPv6Network
    private: bool


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


async def _run(argv: Sequence[str], stdin: bytes = b"") -> str:
    result = await trio.run_process(
        list(argv), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )
    if result.returncode != 0:
        shown = " ".join(argv)
        if stdin:
            shown += "\n" + stdin.decode(errors="replace")
        raise NetnsError(
            f"{shown}\nfailed with exit status {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout.decode(errors="replace")


async def _ip_batch(commands: Sequence[str], netns: str | None = None, force: bool = False) -> str:
    """Run ``ip`` commands (one per line, without the ``ip``) in one process."""
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    return await _run([*argv, "-batch", "-"], stdin="".join(f"{c}\n" for c in commands).encode())


# Runs as `python -c` (as root): per namespace, enter it (setns), write sysctls, send
# netlink messages to nf_tables and wait for the kernel's acknowledgements.  One process
# for all namespaces; no sysctl or nft binary needed.
_CONFIGURE = r"""
import ctypes, json, os, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
for item in json.loads(sys.argv[1]):
    fd = os.open("/run/netns/" + item["netns"], os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            err = ctypes.get_errno()
            raise OSError(err, f"setns {item['netns']}: {os.strerror(err)}")
    finally:
        os.close(fd)
    for key, value in item["sysctl"].items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    if item["netlink"]:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12) as nl:  # NETLINK_NETFILTER
            nl.settimeout(10)
            nl.bind((0, 0))
            nl.sendall(bytes.fromhex(item["netlink"]))
            pending = item["acks"]
            while pending:
                data = nl.recv(65536)
                while data:
                    length, kind = struct.unpack_from("=IH", data)
                    if kind == 2:  # NLMSG_ERROR: an error, or 0 for an acknowledgement
                        err = -struct.unpack_from("=i", data, 16)[0]
                        if err:
                            raise OSError(err, f"nf_tables in {item['netns']}: {os.strerror(err)}")
                        pending -= 1
                    data = data[(length + 3) & ~3:]
"""


async def _configure(items: list[dict[str, object]]) -> None:
    await _run([sys.executable, "-c", _CONFIGURE, json.dumps(items)])


# --------------------------------------------------------------------------------------
# nf_tables NAT as netlink messages (linux/netfilter/nf_tables.h)
# --------------------------------------------------------------------------------------

_NFNL_SUBSYS_NFTABLES = 10
_NFNL_MSG_BATCH_BEGIN, _NFNL_MSG_BATCH_END = 0x10, 0x11
_NFT_MSG_NEWTABLE, _NFT_MSG_NEWCHAIN, _NFT_MSG_NEWRULE = 0, 3, 6
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_CREATE, _NLM_F_APPEND = 0x1, 0x4, 0x400, 0x800
_NLA_F_NESTED = 0x8000
_NF_INET_PRE_ROUTING, _NF_INET_POST_ROUTING = 0, 4
_NFT_PAYLOAD_NETWORK_HEADER = 1
_NFT_REG_1 = 1
_NFT_NAT_SNAT, _NFT_NAT_DNAT = 0, 1
_NAT_TABLE = "tpyc_nat"


def _attr(kind: int, payload: bytes | str) -> bytes:
    data = payload.encode() + b"\0" if isinstance(payload, str) else payload
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def _nest(kind: int, *items: bytes) -> bytes:
    return _attr(kind | _NLA_F_NESTED, b"".join(items))


def _be32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack(">i" if value < 0 else ">I", value))


def _expr(name: str, *data: bytes) -> bytes:
    # NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }
    return _nest(1, _attr(1, name), _nest(2, *data))


def _nf_message(kind: int, flags: int, seq: int, family: int, body: bytes) -> bytes:
    res_id = _NFNL_SUBSYS_NFTABLES if kind in (_NFNL_MSG_BATCH_BEGIN, _NFNL_MSG_BATCH_END) else 0
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body  # nfgenmsg
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def nat_netlink_batch(pairs: Sequence[tuple[str, str]]) -> tuple[bytes, int]:
    """nf_tables messages for 1:1 NAT of each ``(public, private)`` address pair.

    Equivalent to ``nft``: table ``tpyc_nat`` (per family) with chains ``pre``
    (prerouting, priority -100: ``ip daddr PUBLIC dnat to PRIVATE``) and ``post``
    (postrouting, priority 100: ``ip saddr PRIVATE snat to PUBLIC``).  Returns the
    batch and the number of acknowledgements to wait for.
    """
    messages = [_nf_message(_NFNL_MSG_BATCH_BEGIN, _NLM_F_REQUEST, 0, socket.AF_UNSPEC, b"")]

    def add(kind: int, flags: int, family: int, body: bytes) -> None:
        flags |= _NLM_F_REQUEST | _NLM_F_ACK
        messages.append(_nf_message((_NFNL_SUBSYS_NFTABLES << 8) | kind, flags, 0, family, body))

    parsed = [
        (ipaddress.ip_address(public), ipaddress.ip_address(private)) for public, private in pairs
    ]
    families = {4: socket.AF_INET, 6: socket.AF_INET6}
    for version in sorted({public.version for public, _ in parsed}):
        family = families[version]
        add(_NFT_MSG_NEWTABLE, _NLM_F_CREATE, family, _attr(1, _NAT_TABLE))
        for chain, hook, priority in (
            ("pre", _NF_INET_PRE_ROUTING, -100),
            ("post", _NF_INET_POST_ROUTING, 100),
        ):
            hook_attr = _nest(4, _be32(1, hook), _be32(2, priority))  # NFTA_CHAIN_HOOK
            add(
                _NFT_MSG_NEWCHAIN,
                _NLM_F_CREATE,
                family,
                _attr(1, _NAT_TABLE) + _attr(3, chain) + hook_attr + _attr(7, "nat"),
            )
    for public, private in parsed:
        if public.version != private.version:
            raise ValueError(f"NAT pair of mixed families: {public}, {private}")
        family = families[public.version]
        source, destination = (12, 16) if public.version == 4 else (8, 24)  # header offsets
        for chain, offset, match, nat_type, target in (
            ("pre", destination, public, _NFT_NAT_DNAT, private),
            ("post", source, private, _NFT_NAT_SNAT, public),
        ):
            expressions = (
                # payload load (network header, offset, length) into register 1
                _expr(
                    "payload",
                    _be32(1, _NFT_REG_1),
                    _be32(2, _NFT_PAYLOAD_NETWORK_HEADER),
                    _be32(3, offset),
                    _be32(4, len(match.packed)),
                ),
                # cmp register 1 == address
                _expr("cmp", _be32(1, _NFT_REG_1), _be32(2, 0), _nest(3, _attr(1, match.packed))),
                # immediate register 1 = target; nat type family addr-min=register 1
                _expr("immediate", _be32(1, _NFT_REG_1), _nest(2, _attr(1, target.packed))),
                _expr("nat", _be32(1, nat_type), _be32(2, family), _be32(3, _NFT_REG_1)),
            )
            add(
                _NFT_MSG_NEWRULE,
                _NLM_F_CREATE | _NLM_F_APPEND,
                family,
                _attr(1, _NAT_TABLE) + _attr(2, chain) + _nest(4, *expressions),
            )
    acks = len(messages) - 1
    messages.append(_nf_message(_NFNL_MSG_BATCH_END, _NLM_F_REQUEST, 0, socket.AF_UNSPEC, b""))
    for seq, message in enumerate(messages):  # number them, for the kernel's replies
        messages[seq] = message[:8] + struct.pack("=I", seq) + message[12:]
    return b"".join(messages), acks


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------

_QUIET_IPV6 = {  # addresses usable at once, link-local ones included (no DAD)
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}
_NO_IPV6 = {  # hubs: bridge ports with no addresses, sending nothing of their own
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
_FORWARDING = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
_IFINDEX = re.compile(rf"^(\d+): {HOST_IFNAME}[@:]", re.MULTILINE)


async def _build(
    plans: Sequence[_LanPlan], router: bool, prefix: str, created: list[str]
) -> Network:
    if not plans:
        raise ValueError("a network needs at least one LAN")
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", prefix):
        raise ValueError(f"name_prefix {prefix!r}: use letters, digits, '_', '.', '-'")
    if not router and any(plan.private for plan in plans):
        raise ValueError("NAT needs the router")
    if plans[0].private:
        raise ValueError("LAN 0 holds the public addresses: it cannot be behind NAT")
    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    router_ns = f"{tag}-r" if router else None
    hubs = [f"{tag}-l{k}" for k in range(len(plans))]
    host_ns = [[f"{tag}-l{k}h{i}" for i in range(plan.hosts)] for k, plan in enumerate(plans)]

    # Addresses, routes and NAT pairs.
    public_lan = plans[0]
    nat_pairs: list[tuple[str, str]] = []
    public: dict[str, tuple[str, str]] = {}
    for k, plan in enumerate(plans):
        if plan.hosts < 1 or plan.hosts > MAX_HOSTS:
            raise ValueError(f"LAN {k}: between 1 and {MAX_HOSTS} hosts, not {plan.hosts}")
        for i in range(plan.hosts if plan.private else 0):
            number = _PUBLIC_BASE + len(public)
            if number >= _ROUTER_HOST:
                raise ValueError(f"at most {_ROUTER_HOST - _PUBLIC_BASE} hosts behind NAT")
            pair = (str(public_lan.subnet4[number]), str(public_lan.subnet6[number]))
            public[host_ns[k][i]] = pair
            nat_pairs += [(pair[0], str(plan.subnet4[i + 1])), (pair[1], str(plan.subnet6[i + 1]))]

    created += [*hubs, *(name for names in host_ns for name in names)]
    if router_ns is not None:
        created.append(router_ns)
    names = list(created)
    await _ip_batch([f"netns add {name}" for name in names])

    configure: list[dict[str, object]] = [
        {"netns": hub, "sysctl": _NO_IPV6, "netlink": "", "acks": 0} for hub in hubs
    ]
    configure += [
        {"netns": name, "sysctl": _QUIET_IPV6, "netlink": "", "acks": 0}
        for lan_names in host_ns
        for name in lan_names
    ]
    if router_ns is not None:
        batch, acks = nat_netlink_batch(nat_pairs) if nat_pairs else (b"", 0)
        configure.append(
            {
                "netns": router_ns,
                "sysctl": _QUIET_IPV6 | _FORWARDING,
                "netlink": batch.hex(),
                "acks": acks,
            }
        )
    await _configure(configure)

    # Hubs: the bridge and every veth pair (the peer goes straight into its namespace).
    async with trio.open_nursery() as nursery:
        for k, hub in enumerate(hubs):
            commands = [
                "link set lo up",
                "link add br0 type bridge mcast_snooping 0",
                "link set br0 up",
            ]
            for i, name in enumerate(host_ns[k]):
                commands += [
                    f"link add p{i} type veth peer name {HOST_IFNAME} netns {name}",
                    f"link set p{i} master br0 up",
                ]
            if router_ns is not None:
                commands += [
                    f"link add pr type veth peer name eth{k} netns {router_ns}",
                    "link set pr master br0 up",
                ]
            nursery.start_soon(_ip_batch, commands, hub)

    def gateway(plan: _LanPlan) -> tuple[str, str]:
        return str(plan.subnet4[_ROUTER_HOST]), str(plan.subnet6[_ROUTER_HOST])

    lans: list[Lan] = []
    async with trio.open_nursery() as nursery:
        if router_ns is not None:
            commands = ["link set lo up"]
            for k, plan in enumerate(plans):
                v4, v6 = gateway(plan)
                commands += [
                    f"addr add {v4}/24 dev eth{k}",
                    f"addr add {v6}/64 dev eth{k} nodad",
                    f"link set eth{k} up",
                ]
            for v4, v6 in public.values():
                commands += [f"addr add {v4}/24 dev eth0", f"addr add {v6}/64 dev eth0 nodad"]
            nursery.start_soon(_ip_batch, commands, router_ns)

        ifindexes: dict[str, int] = {}

        async def set_up_host(name: str, commands: list[str]) -> None:
            output = await _ip_batch([*commands, f"link show dev {HOST_IFNAME}"], name)
            found = _IFINDEX.search(output)
            if found is None:
                raise NetnsError(f"no ifindex for {HOST_IFNAME} in {name}: {output!r}")
            ifindexes[name] = int(found.group(1))

        for k, plan in enumerate(plans):
            for i, name in enumerate(host_ns[k]):
                commands = [
                    "link set lo up",
                    f"addr add {plan.subnet4[i + 1]}/24 dev {HOST_IFNAME}",
                    f"addr add {plan.subnet6[i + 1]}/64 dev {HOST_IFNAME} nodad",
                    f"link set {HOST_IFNAME} up",
                ]
                if router_ns is not None:
                    v4, v6 = gateway(plan)
                    for m, other in enumerate(plans):
                        if m != k and not other.private:
                            commands += [
                                f"route add {other.subnet4} via {v4}",
                                f"route add {other.subnet6} via {v6}",
                            ]
                nursery.start_soon(set_up_host, name, commands)

    for k, plan in enumerate(plans):
        hosts = [
            NetnsHost(
                netns=name,
                ipv4=str(plan.subnet4[i + 1]),
                ipv6=str(plan.subnet6[i + 1]),
                ifname=HOST_IFNAME,
                ifindex=ifindexes[name],
                lan=k,
                public_ipv4=public[name][0] if name in public else None,
                public_ipv6=public[name][1] if name in public else None,
            )
            for i, name in enumerate(host_ns[k])
        ]
        router4, router6 = gateway(plan) if router_ns is not None else (None, None)
        lans.append(
            Lan(
                index=k,
                netns=hubs[k],
                hosts=hosts,
                subnet4=str(plan.subnet4),
                subnet6=str(plan.subnet6),
                broadcast4=str(plan.subnet4.broadcast_address),
                router_ipv4=router4,
                router_ipv6=router6,
                private=plan.private,
            )
        )
    return Network(lans=lans, router=router_ns, namespaces=names)


async def _delete(names: Sequence[str]) -> None:
    """Delete the namespaces (their veths and bridges go with them); shielded."""
    if not names:
        return
    # An error is for those never made (a failed setup); the others are gone.
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(_CLEANUP_TIMEOUT),
        suppress(NetnsError),
    ):
        await _ip_batch([f"netns del {name}" for name in names], force=True)
    left = [name for name in names if (NETNS_DIR / name).exists()]
    if left:
        raise NetnsError(f"could not delete network namespaces: {left}")


@asynccontextmanager
async def _open(plans: Sequence[_LanPlan], router: bool, prefix: str) -> AsyncIterator[Network]:
    created: list[str] = []
    try:
        with trio.fail_after(_SETUP_TIMEOUT):
            network = await _build(plans, router, prefix, created)
        yield network
    finally:
        await _delete(created)


@asynccontextmanager
async def open_lan(
    hosts: int,
    *,
    subnet4: str = "10.77.0",
    subnet6: str = "fd77::",
    name_prefix: str = "tpyc-",
) -> AsyncIterator[Lan]:
    """One bridged LAN of ``hosts`` host namespaces, deleted when the block ends.

    ``subnet4`` is the first three octets of the /24, ``subnet6`` the /64 prefix
    (host ``i`` gets ``{subnet4}.{i + 1}`` and ``{subnet6}{i + 1}``).
    """
    plan = _LanPlan(
        hosts=hosts,
        subnet4=ipaddress.IPv4Network(f"{subnet4}.0/24"),
        subnet6=ipaddress.IPv6Network(f"{subnet6}/64"),
        private=False,
    )
    async with _open([plan], False, name_prefix) as network:
        yield network.lans[0]


@asynccontextmanager
async def open_network(
    lans: Sequence[int],
    *,
    router: bool = True,
    nat: Collection[int] = (),
    subnet4: str = "10.77",
    subnet6: str = "fd77::",
    name_prefix: str = "tpyc-",
) -> AsyncIterator[Network]:
    """LANs of ``lans[k]`` hosts each, joined by a router namespace if ``router``.

    LAN ``k`` is ``{subnet4}.{k}.0/24`` and the ``k``-th /64 after ``subnet6``
    (``fd77::/64``, ``fd77:0:0:1::/64``, ...); the router is ``.254`` (``::fe``) on
    each.  Hosts get routes (no default route) to the other LANs through the router,
    which forwards unicast; broadcast and multicast stay on each LAN.  LANs whose
    index is in ``nat`` are private: the other LANs have no route to them, and reach
    their hosts at :attr:`NetnsHost.public_ipv4`/``public_ipv6`` (``.200`` and up on
    LAN 0, owned by the router), translated 1:1 both ways.
    """
    base6 = int(ipaddress.IPv6Address(subnet6))
    plans = [
        _LanPlan(
            hosts=count,
            subnet4=ipaddress.IPv4Network(f"{subnet4}.{k}.0/24"),
            subnet6=ipaddress.IPv6Network((base6 + (k << 64), 64)),
            private=k in nat,
        )
        for k, count in enumerate(lans)
    ]
    unknown = set(nat) - set(range(len(plans)))
    if unknown:
        raise ValueError(f"nat={sorted(nat)} names LANs that do not exist: {sorted(unknown)}")
    if nat and not router:
        raise ValueError("nat needs router=True")
    async with _open(plans, router, name_prefix) as network:
        yield network
