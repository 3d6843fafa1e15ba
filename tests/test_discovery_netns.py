"""Discovery on real sockets between network namespaces these tests create (root
only; CI runs as root): IPv4 broadcast, IPv4 multicast, IPv6 multicast with several
nodes per namespace, relay across a router that broadcasts do not cross, and a node
behind NAT advertising ``ext_ip_addr``.

Each node is ``tests/discovery_program.py`` in its own process, inside a namespace
(see ``tests/netns.py``); it prints ``online NAME HOST PORT`` for every peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
from netns import NetnsHost, needs_netns, open_lan, open_network
from procs import NodeProcess, open_node_process

pytestmark = [pytest.mark.netns, needs_netns]

PROGRAM = str(Path(__file__).with_name("discovery_program.py"))
WAIT = 20  # seconds: generous for a loaded CI machine; discovery takes milliseconds


@asynccontextmanager
async def run_nodes(
    specs: Sequence[tuple[NetnsHost, str, Sequence[str]]], *, ipv6: bool = False
) -> AsyncIterator[list[NodeProcess]]:
    """Start ``discovery_program.py NAME ARGS`` on each (host, name, args); all ready."""
    async with AsyncExitStack() as stack:
        procs = []
        for host, name, args in specs:
            node = host.ipv6 if ipv6 else host.ipv4
            extra = ["--ipv6"] if ipv6 else []
            proc = await stack.enter_async_context(
                open_node_process(
                    [PROGRAM, name, *extra, *args], node=node, netns=host.netns, timeout=60
                )
            )
            procs.append(proc)
        for proc in procs:
            await proc.wait_for_output("ready ")
        yield procs


async def sees(proc: NodeProcess, names: Sequence[str]) -> None:
    with trio.fail_after(WAIT):
        for name in names:
            await proc.wait_for_output(f"online {name} ")


def online(proc: NodeProcess) -> set[str]:
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("online ")}


@pytest.mark.parametrize(
    ("args", "ipv6"),
    [
        pytest.param([], False, id="ipv4-broadcast"),
        pytest.param(["--multicast"], False, id="ipv4-multicast"),
        pytest.param([], True, id="ipv6-multicast"),
    ],
)
async def test_nodes_in_two_namespaces_find_each_other(args: list[str], ipv6: bool) -> None:
    async with open_lan(2) as lan:
        h1, h2 = lan.hosts
        # Two nodes share h1 (same udp_port, their own TCP ports), one on h2.
        specs = [(h1, "a1", args), (h1, "a2", args), (h2, "b", args)]
        async with run_nodes(specs, ipv6=ipv6) as procs:
            names = [name for _, name, _ in specs]
            for proc, name in zip(procs, names, strict=True):
                await sees(proc, [n for n in names if n != name])
            # "ready HOST PORT": whichever node on h1 started first got 9705 (the
            # default tcp_port=None), the other one another port.
            ready = [proc.stdout.splitlines()[0].split() for proc in procs]
            assert ready[0][1] == ready[1][1]
            assert "9705" in (ready[0][2], ready[1][2]) and ready[0][2] != ready[1][2]


async def test_broadcast_and_multicast_nodes_ignore_each_other() -> None:
    async with open_lan(2) as lan:
        h1, h2 = lan.hosts
        specs = [
            (h1, "b1", []),
            (h2, "b2", []),
            (h1, "m1", ["--multicast"]),
            (h2, "m2", ["--multicast"]),
        ]
        async with run_nodes(specs) as (b1, b2, m1, m2):
            await sees(b1, ["b2"])
            await sees(m1, ["m2"])
            await sees(b2, ["b1"])
            await sees(m2, ["m1"])
            # Wait past the first re-announcements (1 s, 2 s) before looking.
            await trio.sleep(3.5)
            assert online(b1) == {"b2"}
            assert online(m1) == {"m2"}


async def test_another_secret_never_connects() -> None:
    async with open_lan(2) as lan:
        h1, h2 = lan.hosts
        specs = [(h1, "a", []), (h2, "b", []), (h2, "x", ["--secret", "another"])]
        async with run_nodes(specs) as (a, b, x):
            await sees(a, ["b"])
            await trio.sleep(2.5)
            assert online(a) == {"b"}
            assert online(x) == set()
            # Dropped at the datagram: no handshake was even tried.
            for proc in (a, b, x):
                assert "handshake" not in proc.stderr, proc.stderr


async def test_peer_with_relay_across_a_router() -> None:
    # LAN 0: "me"; LAN 1: two nodes on one host and one on another.  Broadcasts do not
    # cross the router; unicast does.
    async with open_network([1, 2]) as net:
        (me_host,) = net.lans[0].hosts
        box, other = net.lans[1].hosts
        far: list[tuple[NetnsHost, str, list[str]]] = [
            (box, "box1", []),
            (box, "box2", []),
            (other, "other", []),
        ]
        async with run_nodes(far) as far_procs:
            for proc, (_, name, _) in zip(far_procs, far, strict=True):
                await sees(proc, [n for _, n, _ in far if n != name])
            # Without relay: the nodes on the pinged host only.
            async with run_nodes([(me_host, "me", ["--peer", box.ipv4])]) as (me,):
                await sees(me, ["box1", "box2"])
                await trio.sleep(2.5)
                assert online(me) == {"box1", "box2"}
            # With relay: every node of that network.
            async with run_nodes([(me_host, "me2", ["--peer", box.ipv4, "--relay"])]) as (me2,):
                await sees(me2, ["box1", "box2", "other"])


async def test_a_node_behind_nat_is_reached_at_its_ext_ip_addr() -> None:
    async with open_network([1, 1], nat=[1]) as net:
        (outside,) = net.lans[0].hosts
        (inside,) = net.lans[1].hosts
        assert inside.public_ipv4 is not None
        async with run_nodes(
            [(inside, "natted", ["--ext", inside.public_ipv4, "--tcp-port", "9800"])]
        ) as (natted,):
            assert natted.stdout.startswith(f"ready {inside.public_ipv4} 9800")
            async with run_nodes(
                [(outside, "out", ["--peer", inside.public_ipv4, "--peer-port", "9800"])]
            ) as (out,):
                await sees(out, ["natted"])
                await sees(natted, ["out"])
                assert f"online natted {inside.public_ipv4} 9800" in out.stdout
                assert "peer 0" in out.stdout


def dropped(proc: NodeProcess) -> int:
    """The last ``stats RECEIVED DROPPED`` line's DROPPED."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("stats ")]
    return int(lines[-1].split()[2])


# Sends each datagram given as hex on the command line to the broadcast address.
SENDER = """
import os, socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((os.environ["TRIOPYCOS_TEST_NODE"], 0))
    for item in sys.argv[1:]:
        s.sendto(bytes.fromhex(item), ("255.255.255.255", 9705))
print("sent", len(sys.argv) - 1, flush=True)
"""


async def test_bad_datagrams_are_dropped_and_counted_on_real_sockets() -> None:
    from triopycos.protocol.discovery import Announcement, encode

    good = encode(
        Announcement("announce", b"\x07" * 16, "evil", (("10.77.0.2", 9705),)), "netns secret"
    )
    bad = [
        b"garbage",
        good[:-1],  # truncated
        good[:-1] + bytes([good[-1] ^ 1]),  # forged
        good[:4] + b"\x00" + good[5:],  # another version
        encode(Announcement("announce", b"\x07" * 16, "x", (("10.77.0.2", 1),)), "other"),
        good + b"\x00" * 1400,  # oversized
        b"\x80\x04\x95" + b"\x00" * 60,  # a pickle
    ]
    async with open_lan(3) as lan:
        h1, h2, h3 = lan.hosts
        async with run_nodes([(h1, "a", ["--stats"])]) as (a,):
            with trio.fail_after(WAIT):
                await a.wait_for_output("stats ")
            assert dropped(a) == 0  # (it hears its own announcements: not dropped)
            async with open_node_process(
                ["-c", SENDER, *(d.hex() for d in bad)], node=h2.ipv4, netns=h2.netns
            ) as sender:
                assert await sender.wait() == 0, sender.describe()
            for _ in range(WAIT * 10):
                if dropped(a) >= len(bad):
                    break
                await trio.sleep(0.1)  # the process reports every 0.1 s
            assert dropped(a) == len(bad)
            # Still serving: a new node is found as before; nothing was tried with "evil".
            async with run_nodes([(h3, "b", [])]) as (b,):
                await sees(a, ["b"])
                await sees(b, ["a"])
            assert "evil" not in a.stdout + a.stderr
            assert "handshake" not in a.stderr
