"""tests/netns.py: LANs of network namespaces, a router between them, and NAT.

The programs run in the namespaces use plain sockets (no triopycos), so that these
tests check the test infrastructure alone.
"""

from __future__ import annotations

import textwrap
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from netns import NETNS_DIR, NetnsHost, needs_netns, open_lan, open_network
from procs import NodeProcess, open_node_process

pytestmark = [pytest.mark.netns, needs_netns]

PORT = 9705
GROUP4 = "239.255.84.80"
GROUP6 = "ff05::5450"

# Prints "ready", then what each socket receives, until every socket has a
# datagram saying "end" (or 5 s pass); exits 0.  argv: "v4"/"v6", number of sockets,
# then the multicast group to join, if any.
RECEIVER = textwrap.dedent(
    """
    import os, select, socket, struct, sys, time
    family = socket.AF_INET6 if sys.argv[1] == "v6" else socket.AF_INET
    group = sys.argv[3] if len(sys.argv) > 3 else None
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    socks = []
    for _ in range(int(sys.argv[2])):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::", int(os.environ["PORT"])))
        else:
            s.bind(("0.0.0.0", int(os.environ["PORT"])))
        if group and family == socket.AF_INET:
            mreq = socket.inet_aton(group) + socket.inet_aton(node)  # not INADDR_ANY
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        elif group:
            ifindex = int(os.environ["IFINDEX"])
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        socks.append(s)
    print("ready", flush=True)
    done = set()
    deadline = time.monotonic() + 5
    while len(done) < len(socks) and time.monotonic() < deadline:
        readable, _, _ = select.select(socks, [], [], 0.1)
        for s in readable:
            data, _ = s.recvfrom(100)
            print(socks.index(s), data.decode(), flush=True)
            if data == b"end":
                done.add(s)
    """
)

# Sends each argv[2:] item "message@address" from a socket bound to the node
# address (argv[1]: "v4"/"v6"), with SO_BROADCAST / the multicast interface set.
SENDER = textwrap.dedent(
    """
    import os, socket, sys
    family = socket.AF_INET6 if sys.argv[1] == "v6" else socket.AF_INET
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, int(os.environ["IFINDEX"]))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
        else:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(node))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
        s.bind((node, 0))  # the own address: 255.255.255.255 needs it with no default route
        for item in sys.argv[2:]:
            message, _, address = item.rpartition("@")
            s.sendto(message.encode(), (address, int(os.environ["PORT"])))
    """
)

# TCP server on (node, argv[1]): accepts one connection, prints the peer's address.
SERVER = textwrap.dedent(
    """
    import os, socket, sys
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    with socket.socket(socket.AF_INET6 if ":" in node else socket.AF_INET) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((node, int(sys.argv[1])))
        listener.listen()
        listener.settimeout(5)
        print("ready", flush=True)
        conn, peer = listener.accept()
        with conn:
            print("peer", peer[0], conn.recv(100).decode(), flush=True)
    """
)

# TCP client from the node address to (argv[1], argv[2]): prints "connected" or the errno.
CLIENT = textwrap.dedent(
    """
    import errno, os, socket, sys
    node = os.environ["TRIOPYCOS_TEST_NODE"]
    with socket.socket(socket.AF_INET6 if ":" in node else socket.AF_INET) as s:
        s.settimeout(5)
        s.bind((node, 0))
        try:
            s.connect((sys.argv[1], int(sys.argv[2])))
        except OSError as exc:
            print("error", errno.errorcode.get(exc.errno, exc.errno), flush=True)
        else:
            s.sendall(b"hello")
            print("connected", flush=True)
    """
)


def _node(host: NetnsHost, family: str) -> str:
    return host.ipv6 if family == "v6" else host.ipv4


def _start(
    host: NetnsHost, family: str, code: str, *args: str
) -> AbstractAsyncContextManager[NodeProcess]:
    return open_node_process(
        ["-c", code, *args],
        node=_node(host, family),
        netns=host.netns,
        env={"IFINDEX": str(host.ifindex), "PORT": str(PORT)},
        timeout=20,
    )


async def _run(host: NetnsHost, family: str, code: str, *args: str) -> str:
    async with _start(host, family, code, *args) as proc:
        with trio.fail_after(10):
            assert await proc.wait() == 0, proc.describe()
    return proc.stdout


async def _finish(proc: NodeProcess) -> list[str]:
    """The process's output lines after "ready", once it has exited with status 0."""
    with trio.fail_after(10):
        assert await proc.wait() == 0, proc.describe()
    return proc.stdout.partition("ready\n")[2].splitlines()


async def test_lan_addresses_and_cleanup() -> None:
    async with open_lan(2, subnet4="10.77.9", subnet6="fd77:9::") as lan:
        assert [(h.ipv4, h.ipv6) for h in lan.hosts] == [
            ("10.77.9.1", "fd77:9::1"),
            ("10.77.9.2", "fd77:9::2"),
        ]
        assert lan.broadcast4 == "10.77.9.255"
        names = [lan.netns, *(host.netns for host in lan.hosts)]
        assert all(name.startswith("tpyc-") and (NETNS_DIR / name).exists() for name in names)
    assert not any((NETNS_DIR / name).exists() for name in names)

    with trio.CancelScope() as scope:
        async with open_network([1, 1], nat=[1]) as network:
            names = network.namespaces
            scope.cancel()
            await trio.sleep_forever()
    assert not any((NETNS_DIR / name).exists() for name in names)


async def test_broadcast_reaches_every_socket_sharing_the_port() -> None:
    async with open_lan(2) as lan:
        receiver_host, sender_host = lan.hosts
        async with _start(receiver_host, "v4", RECEIVER, "v4", "2") as receiver:
            await receiver.wait_for_output("ready")
            await _run(
                sender_host,
                "v4",
                SENDER,
                "v4",
                "limited@255.255.255.255",
                f"subnet@{lan.broadcast4}",
                "end@255.255.255.255",
            )
            lines = await _finish(receiver)
    for sock in "01":
        assert [line for line in lines if line.startswith(sock)] == [
            f"{sock} limited",
            f"{sock} subnet",
            f"{sock} end",
        ]


@pytest.mark.parametrize(("family", "group"), [("v4", GROUP4), ("v6", GROUP6)])
async def test_multicast_reaches_every_member(family: str, group: str) -> None:
    async with open_lan(3) as lan:
        sender_host = lan.hosts[2]
        async with (
            _start(lan.hosts[0], family, RECEIVER, family, "2", group) as first,
            _start(lan.hosts[1], family, RECEIVER, family, "1", group) as second,
            _start(sender_host, family, RECEIVER, family, "1", group) as own_host,
        ):
            for proc in (first, second, own_host):
                await proc.wait_for_output("ready")
            await _run(sender_host, family, SENDER, family, f"hi@{group}", f"end@{group}")
            assert sorted(await _finish(first)) == ["0 end", "0 hi", "1 end", "1 hi"]
            assert await _finish(second) == ["0 hi", "0 end"]
            assert await _finish(own_host) == ["0 hi", "0 end"]  # the looped-back copy


async def test_router_forwards_unicast_but_not_broadcast() -> None:
    async with open_network([1, 1]) as network:
        (near,), (far,) = (lan.hosts for lan in network.lans)
        assert network.router is not None
        # Broadcast and multicast from LAN 0 must not reach LAN 1; the unicast "end"
        # that follows them on the same path does.
        async with _start(far, "v4", RECEIVER, "v4", "1", GROUP4) as receiver:
            await receiver.wait_for_output("ready")
            await _run(
                near,
                "v4",
                SENDER,
                "v4",
                "limited@255.255.255.255",
                f"directed@{network.lans[1].broadcast4}",
                f"multicast@{GROUP4}",
                f"end@{far.ipv4}",
            )
            assert await _finish(receiver) == ["0 end"]
        for family in ("v4", "v6"):
            async with _start(far, family, SERVER, str(PORT)) as server:
                await server.wait_for_output("ready")
                assert await _run(near, family, CLIENT, _node(far, family), str(PORT)) == (
                    "connected\n"
                )
                assert await _finish(server) == [f"peer {_node(near, family)} hello"]


async def test_nat_reaches_the_private_host_at_its_public_address() -> None:
    async with open_network([1, 1], nat=[1]) as network:
        (outside,), (inside,) = (lan.hosts for lan in network.lans)
        assert inside.public_ipv4 == "10.77.0.200"
        assert inside.public_ipv6 == "fd77::c8"
        assert outside.public_ipv4 is None
        for family, public in (("v4", inside.public_ipv4), ("v6", inside.public_ipv6)):
            # In: to the public address, the server on the private one sees the client.
            async with _start(inside, family, SERVER, str(PORT)) as server:
                await server.wait_for_output("ready")
                assert await _run(outside, family, CLIENT, public, str(PORT)) == "connected\n"
                assert await _finish(server) == [f"peer {_node(outside, family)} hello"]
            # The private address itself is out of reach.
            assert await _run(outside, family, CLIENT, _node(inside, family), str(PORT)) == (
                "error ENETUNREACH\n"
            )
            # Out: the outside sees the public address.
            async with _start(outside, family, SERVER, str(PORT)) as server:
                await server.wait_for_output("ready")
                assert await _run(inside, family, CLIENT, _node(outside, family), str(PORT)) == (
                    "connected\n"
                )
                assert await _finish(server) == [f"peer {public} hello"]
