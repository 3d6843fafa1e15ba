"""Discovery on the virtual network under the mock clock: broadcast, IPv4 and IPv6
multicast, several nodes per host, ping and relay, NAT, re-announcement after loss,
and bad datagrams.  (The same scenarios between real network namespaces are in
``test_discovery_netns.py``.)"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triopycos import Limits, Location, PeerStatus, Pycos, Task
from triopycos.protocol.discovery import Announcement, decode, encode
from triopycos.services import discovery as discovery_service
from triopycos.testing import LinkConfig, VirtualNetwork
from triopycos.testing._hosts import VirtualHost

SECRET = "discovery test"


@asynccontextmanager
async def nodes(
    net: VirtualNetwork, names: Sequence[str], **kwargs: Any
) -> AsyncIterator[list[Pycos]]:
    """Nodes with discovery on, each on its own host unless ``node=`` is given."""
    async with AsyncExitStack() as stack:
        opened = []
        for name in names:
            kwargs.setdefault("discover_peers", True)
            kwargs.setdefault("secret", SECRET)
            opened.append(await stack.enter_async_context(net.open_pycos(name=name, **kwargs)))
        yield opened


async def peer_names(node: Pycos) -> set[str]:
    status = await node.status()
    assert status is not None
    return {peer.name for peer in status.peers}


async def all_peered(group: Sequence[Pycos], timeout: float = 5.0) -> float:
    """Wait until every node of ``group`` has every other as a peer; the time taken."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        for node in group:
            for other in group:
                if other is not node:
                    assert await node.locate(other.name, timeout=timeout) == other.location
    return trio.current_time() - start


# -- finding each other -------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({}, id="ipv4-broadcast"),
        pytest.param({"ipv4_udp_multicast": True}, id="ipv4-multicast"),
        pytest.param({"socket_family": socket.AF_INET6}, id="ipv6-multicast"),
    ],
)
async def test_nodes_on_one_network_find_each_other(
    autojump_clock: trio.testing.MockClock, how: dict[str, Any]
) -> None:
    async with VirtualNetwork(seed=1) as net, nodes(net, ["a", "b", "c"], **how) as group:
        took = await all_peered(group)
        assert took < 0.1  # one announcement each, no waiting for a repeat
        for node in group:
            assert len(node.peers()) == 2
            family = how.get("socket_family", socket.AF_INET)
            assert all((":" in loc.addr) == (family == socket.AF_INET6) for loc in node.peers())


async def test_peer_status_reports_discovered_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=2) as net, nodes(net, ["a"]) as (a,):
        seen: list[PeerStatus] = []

        async def watch(task: Task) -> None:
            while len(seen) < 2:
                seen.append(await task.receive())

        watcher = a.spawn(watch)
        a.peer_status(watcher)
        async with nodes(net, ["b", "c"]):
            await watcher.finish()
        assert {(s.name, s.status) for s in seen} == {
            ("b", PeerStatus.Online),
            ("c", PeerStatus.Online),
        }


async def test_broadcast_and_multicast_nodes_do_not_mix(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=3) as net,
        nodes(net, ["b1", "b2"]) as bcast,
        nodes(net, ["m1", "m2"], ipv4_udp_multicast=True) as mcast,
    ):
        await all_peered(bcast)
        await all_peered(mcast)
        await trio.sleep(60)  # several re-announcements later
        assert await peer_names(bcast[0]) == {"b2"}
        assert await peer_names(mcast[0]) == {"m2"}


async def test_other_secret_is_ignored_without_a_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=4) as net,
        nodes(net, ["a", "b"]) as (a, b),
        nodes(net, ["x"], secret="another secret") as (x,),
    ):
        await all_peered([a, b])
        await trio.sleep(10)
        assert x.peers() == []
        assert "x" not in await peer_names(a)
        # No connection was even tried: x's datagrams failed their MAC at a and b.
        assert not [e for e in net.events if e.kind in ("connect", "refused") and "x" in e.dst]
        assert a.statistics().datagrams_dropped > 0
        assert a.statistics().handshakes_failed == 0
        assert x.statistics().handshakes_failed == 0


async def test_without_discover_peers_a_node_neither_announces_nor_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        VirtualNetwork(seed=5) as net,
        nodes(net, ["a", "b"]) as (a, b),
        nodes(net, ["quiet"], discover_peers=False) as (quiet,),
    ):
        await all_peered([a, b])
        await trio.sleep(60)
        assert quiet.peers() == []
        assert "quiet" not in await peer_names(a)
        assert quiet.statistics().datagrams_received == 0
        # It can still be peered with explicitly.
        assert await quiet.peer(a.location) == 0
        assert await a.locate("quiet", timeout=1) == quiet.location


async def test_nodes_on_different_subnets_do_not_discover_each_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=6) as net:
        far = net.subnet(name="far")
        async with nodes(net, ["a", "b"]) as near, nodes(net, ["f"], subnet=far) as (f,):
            await all_peered(near)
            await trio.sleep(60)
            assert f.peers() == []


# -- several nodes per host -----------------------------------------------------------


async def test_several_nodes_on_one_host_share_the_udp_port(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=7) as net:
        host = net.add_host("box")
        other = net.add_host("other")
        async with (
            nodes(net, ["n1", "n2", "n3"], node=host.ipv4, tcp_port=None) as on_box,
            nodes(net, ["o"], node=other.ipv4, tcp_port=None) as (o,),
        ):
            group = [*on_box, o]
            await all_peered(group)
            # tcp_port=None: the spec's 9705 when free, then any free port.
            ports = [n.location.port for n in on_box]
            assert ports[0] == 9705 and len(set(ports)) == 3
            assert o.location.port == 9705
            assert all(n.udp_port == 9705 for n in group)


# -- peer(host): ping, forward, relay -----------------------------------------------


@asynccontextmanager
async def two_networks(
    net: VirtualNetwork,
) -> AsyncIterator[tuple[Pycos, list[Pycos], list[Pycos], VirtualHost]]:
    """``me`` alone on subnet "home"; on subnet "lan": two nodes on one host ``box``
    and one on another host; everyone discovers within its own subnet."""
    home, lan = net.subnet(name="home"), net.subnet(name="lan")
    box = net.add_host("box", subnet=lan)
    async with (
        nodes(net, ["me"], subnet=home) as (me,),
        nodes(net, ["box1", "box2"], node=box.ipv4, tcp_port=None) as on_box,
        nodes(net, ["elsewhere"], subnet=lan) as elsewhere,
    ):
        await all_peered([*on_box, *elsewhere])
        yield me, on_box, elsewhere, box


async def test_peer_with_a_host_reaches_every_node_on_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=8) as net, two_networks(net) as (me, on_box, _, box):
        assert await me.peer(box.ipv4) == 0
        await all_peered([me, *on_box])
        await trio.sleep(10)
        assert await peer_names(me) == {"box1", "box2"}  # not "elsewhere": no relay
        # The same with a port-0 Location and by host name.
        assert await me.peer(Location(box.ipv4, 0)) == 0
        assert await me.peer("box") == 0


async def test_peer_with_relay_reaches_the_whole_network(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=9) as net, two_networks(net) as (me, on_box, far, _):
        assert await me.peer(on_box[0].location, relay=True) == 0
        await all_peered([me, *on_box, *far])
        assert await peer_names(me) == {"box1", "box2", "elsewhere"}


async def test_locate_waits_for_a_peer_that_appears_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=10) as net, nodes(net, ["a"]) as (a,):
        async with trio.open_nursery() as nursery:
            found: list[Any] = []

            async def look() -> None:
                found.append(await a.locate("late", timeout=30))
                found.append(await Task.locate("late_task", timeout=30))

            nursery.start_soon(look)
            await trio.sleep(5)
            async with nodes(net, ["late"]) as (late,):

                async def late_task(task: Task) -> None:
                    task.register("late_task")
                    await task.receive()

                t = late.spawn(late_task)
                await trio.sleep(1)
                assert found[0] == late.location
                assert found[1] == t
                t.send(None)
        assert await a.locate("never", timeout=3) is None


# -- NAT ------------------------------------------------------------------------------


async def test_ext_ip_addr_is_advertised_for_a_node_behind_nat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=11) as net:
        home, world = net.subnet(name="home"), net.subnet(name="world")
        inside = net.add_host("inside", subnet=home)
        net.nat(inside, "198.51.100.20")
        async with (
            nodes(
                net,
                ["natted"],
                node=inside.ipv4,
                ext_ip_addr="198.51.100.20",
                discover_peers=False,
            ) as (natted,),
            nodes(net, ["out"], subnet=world, discover_peers=False) as (out,),
        ):
            assert natted.location == Location("198.51.100.20", natted.location.port)
            # From outside only the public address works...
            assert await out.peer(Location(inside.ipv4, natted.location.port)) == -1
            assert await out.peer(natted.location) == 0
            assert await out.locate("natted", timeout=1) == natted.location
            # ...and it is how the node is known: a reference made there works here.

            async def echo(task: Task) -> None:
                task.register("echo")
                sender, text = await task.receive()
                sender.send(text.upper())

            natted.spawn(echo)

            async def client(task: Task) -> str:
                r = await Task.locate("echo", natted.location, timeout=2)
                assert r is not None and r.location == natted.location
                r.send((task, "hi"))
                return str(await task.receive(timeout=2))

            assert await out.spawn(client).finish() == "HI"


async def test_ext_ip_addr_is_checked(autojump_clock: trio.testing.MockClock) -> None:
    async with VirtualNetwork(seed=12) as net:
        with pytest.raises(ValueError, match="not an IP address"):
            async with net.open_pycos(ext_ip_addr="gateway"):
                pass
        with pytest.raises(ValueError, match="2 addresses for 1"):
            async with net.open_pycos(ext_ip_addr=["198.51.100.1", "198.51.100.2"]):
                pass
        with pytest.raises(ValueError, match="socket_family"):
            async with net.open_pycos(socket_family=12345):
                pass


# -- loss, restarts, re-announcement --------------------------------------------------


async def test_a_lost_announcement_is_repeated(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        VirtualNetwork(seed=13, link=LinkConfig(loss=0.6)) as net,
        nodes(net, ["a", "b", "c", "d"]) as group,
    ):
        took = await all_peered(group, timeout=120)
        assert took > 0  # something was lost at first...
        assert any(e.kind == "lost" for e in net.events)
        for node in group:
            assert len(node.peers()) == 3  # ...and everyone found everyone.


async def test_announce_interval_none_announces_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=14) as net, nodes(net, ["a"], announce_interval=None) as (a,):
        await trio.sleep(100)
        assert a._discovery is not None
        assert a._discovery.stats.datagrams_sent == 1
    async with VirtualNetwork(seed=14) as net, nodes(net, ["a"], announce_interval=10) as (a,):
        await trio.sleep(100)
        assert a._discovery is not None
        # At 0, 1, 2, 4, 8 (the doubling, capped at 10), then every 10 s.
        assert 10 <= a._discovery.stats.datagrams_sent <= 14
    with pytest.raises(ValueError, match="announce_interval"):
        async with VirtualNetwork(seed=14) as net, net.open_pycos(announce_interval=-1):
            pass


async def test_a_restarted_node_is_found_again(autojump_clock: trio.testing.MockClock) -> None:
    async with VirtualNetwork(seed=15) as net:
        host = net.add_host("h")
        async with nodes(net, ["a"]) as (a,):
            async with nodes(net, ["b"], node=host.ipv4) as (b,):
                await all_peered([a, b])
            await trio.sleep(1)
            assert a.peers() == []
            async with nodes(net, ["b"], node=host.ipv4) as (b2,):
                await all_peered([a, b2])


async def test_partition_heals_through_reannouncement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=16) as net, nodes(net, ["a", "b"], peer_timeout=3) as (a, b):
        await all_peered([a, b])
        net.partition(a, b)
        await trio.sleep(400)  # past every reconnect attempt of the opener (~280 s)
        assert a.peers() == [] and b.peers() == []
        net.heal(a, b)
        await all_peered([a, b], timeout=60)


# -- bad datagrams ------------------------------------------------------------------


async def test_bad_datagrams_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=17) as net, nodes(net, ["a", "b"]) as (a, b):
        await all_peered([a, b])
        attacker = net.add_host("attacker").transport()
        sock = await attacker.open_udp("", 0)
        good = encode(
            Announcement("announce", b"\x01" * 16, "evil", (("10.0.0.99", 9705),)), SECRET
        )
        # One genuine one shows what the rest are variations of.
        assert decode(good, SECRET).name == "evil"
        bad = [
            b"",
            b"garbage",
            good[:-1],  # truncated
            good[:20],
            good[:-1] + bytes([good[-1] ^ 1]),  # forged MAC
            good[:5] + b"X" + good[6:],  # body changed under the MAC
            good[:4] + b"\x02" + good[5:],  # another version
            good[:4] + b"\x00" + good[5:],  # an old version
            encode(Announcement("announce", b"\x01" * 16, "evil", (("10.0.0.99", 1),)), "other"),
            good + b"\x00" * 1400,  # oversized
            b"\x80\x04\x95" + b"\x00" * 60,  # a pickle
        ]
        before = a.statistics()
        for datagram in bad:
            await sock.sendto(datagram, (net.default_subnet.broadcast, 9705))
        await trio.sleep(1)
        after = a.statistics()
        assert after.datagrams_dropped - before.datagrams_dropped == len(bad)
        assert a._discovery is not None
        assert set(a._discovery.stats.dropped) >= {
            "not a discovery datagram",
            "oversized",
            "authentication failed (another secret, or forged)",
            "discovery version",
        }
        assert await peer_names(a) == {"b"}
        assert not [e for e in net.events if e.kind == "refused" or "10.0.0.99" in e.dst]
        # Still serving: a new node is found as before.
        async with nodes(net, ["c"]) as (c,):
            await all_peered([a, b, c])


async def test_valid_announcement_of_nobody_costs_one_failed_connect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A replayed or stale announcement: the node tries the location, fails, and goes on.
    async with VirtualNetwork(seed=18) as net, nodes(net, ["a"]) as (a,):
        outsider = net.add_host("outsider").transport()
        sock = await outsider.open_udp("", 0)
        ghost = Announcement("announce", b"\x02" * 16, "ghost", (("10.0.0.250", 9705),))
        for _ in range(5):
            await sock.sendto(encode(ghost, SECRET), (net.default_subnet.broadcast, 9705))
        await trio.sleep(30)
        assert a.peers() == []
        assert a._discovery is not None and not a._discovery._pending


async def test_many_nodes_converge(autojump_clock: trio.testing.MockClock) -> None:
    async with VirtualNetwork(seed=19) as net:
        names = [f"n{i}" for i in range(20)]
        async with nodes(net, names) as group:
            took = await all_peered(group, timeout=60)
            assert took < 1
            assert all(len(n.peers()) == 19 for n in group)


def _dropped_for_load(group: Sequence[Pycos]) -> int:
    total = 0
    for node in group:
        assert node._discovery is not None
        total += node._discovery.stats.dropped.get("too many connection attempts", 0)
    return total


async def test_attempts_beyond_the_pending_limit_wait_for_a_slot(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every node hears 11 announcements at once and may dial only 2 at a time: the
    # others wait for a slot instead of for the next announcement (1 s later).
    # (The nodes start at the same virtual instant; with links of 0.5 ms their
    # announcements all arrive together.)
    monkeypatch.setattr(discovery_service, "_MAX_PENDING", 2)
    async with (
        VirtualNetwork(seed=23, link=LinkConfig(latency=0.0005)) as net,
        nodes(net, [f"n{i}" for i in range(12)]) as group,
    ):
        assert await all_peered(group, timeout=60) < 0.5
        assert _dropped_for_load(group) == 0
        assert all(n._discovery is not None and not n._discovery._queued for n in group)


async def test_attempts_beyond_the_queue_are_dropped_and_come_back(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery_service, "_MAX_PENDING", 1)
    monkeypatch.setattr(discovery_service, "_MAX_QUEUED", 1)
    async with (
        VirtualNetwork(seed=24, link=LinkConfig(latency=0.0005)) as net,
        nodes(net, [f"n{i}" for i in range(12)]) as group,
    ):
        await all_peered(group, timeout=60)
        assert _dropped_for_load(group) > 0


async def test_a_connection_refused_for_load_is_tried_again_soon(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One handshake at a time per node: most of the simultaneous dials are refused,
    # and tried again within about a second rather than at the next announcement.
    names = [f"n{i}" for i in range(12)]
    async with (
        VirtualNetwork(seed=25, link=LinkConfig(latency=0.0005)) as net,
        nodes(net, names, limits=Limits(max_handshakes=1)) as group,
    ):
        assert await all_peered(group, timeout=60) < 0.9
        refused = 0
        for node in group:
            refused += node.statistics().handshakes_refused_busy
        assert refused > 0


def _ghost(i: int, addr: str) -> Announcement:
    """An announcement of a node that is not there."""
    node_id = bytes([7]) * 12 + i.to_bytes(4, "big")
    return Announcement("announce", node_id, f"ghost{i}", ((addr, 9000),), "", False, False)


async def test_an_unanswering_node_is_not_tried_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Retries are for quick failures: a node that does not answer holds its slot
    # for connect_timeout once, not once per retry.
    async with (
        VirtualNetwork(seed=26, link=LinkConfig(latency=0.0005)) as net,
        nodes(net, ["a"], limits=Limits(connect_timeout=10.0)) as (a,),
    ):
        assert a._discovery is not None
        silent = net.add_host("silent")
        net.partition(a, silent)
        start = trio.current_time()
        a._discovery._connect_to(_ghost(1, silent.ipv4), (silent.ipv4, 9705))
        assert a._discovery._pending
        while a._discovery._pending:  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.05)
        assert 10 <= trio.current_time() - start < 12


async def test_a_stopping_node_starts_none_of_its_queued_attempts(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery_service, "_MAX_PENDING", 1)
    async with VirtualNetwork(seed=27, link=LinkConfig(latency=0.0005)) as net:
        silent = net.add_host("silent")
        async with nodes(net, ["a"]) as (a,):
            discovery = a._discovery
            assert discovery is not None and a._peers is not None
            net.partition(a, silent)
            for i in range(50):
                discovery._connect_to(_ghost(i, silent.ipv4), (silent.ipv4, 9705))
            await trio.sleep(0.01)
            assert len(discovery._pending) == 1
            assert len(discovery._queued) == 49
            started: list[bytes] = []
            real_connect = a._peers.connect

            async def spy(location: Location, node_id: bytes | None = None) -> Any:
                started.append(b"" if node_id is None else node_id)
                return await real_connect(location, node_id)

            monkeypatch.setattr(a._peers, "connect", spy)
        assert started == []
        assert not discovery._queued


async def test_a_new_incarnation_at_a_known_location_replaces_the_old_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # b1's host loses power (no reset reaches a); b2 starts on the same address and
    # port.  a must not wait for its heartbeat timeout on b1: b2 being there shows
    # that b1 is gone.
    async with VirtualNetwork(seed=20) as net:
        host = net.add_host("h")
        seen: list[tuple[str, int]] = []
        three = trio.Event()

        async def watch(task: Task) -> None:
            task.set_daemon()
            while True:
                status = await task.receive()
                seen.append((status.name, status.status))
                if len(seen) == 3:
                    three.set()

        async with nodes(net, ["a"], peer_timeout=1000) as (a,):
            a.peer_status(a.spawn(watch))
            async with nodes(net, ["b"], node=host.ipv4, tcp_port=9705) as (b1,):
                await all_peered([a, b1])
                net.crash(b1, silent=True)
            await trio.sleep(5)
            assert a.peers() == [b1.location]  # a has not noticed
            async with nodes(net, ["b"], node=host.ipv4, tcp_port=9705) as (b2,):
                assert b2.location == b1.location
                start = trio.current_time()
                assert a._peers is not None
                with trio.fail_after(5):
                    while b2._node_id not in a._peers.by_id:
                        await a._peers.changed.wait()
                assert trio.current_time() - start < 2.5  # the next announcement
                assert a.peers() == [b2.location]
                with trio.fail_after(1):
                    await three.wait()
                online, offline = PeerStatus.Online, PeerStatus.Offline
                assert seen == [("b", online), ("b", offline), ("b", online)]


async def test_a_node_on_both_families_is_found_by_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=21) as net:
        dual = net.add_host("dual")
        async with (
            nodes(net, ["both"], node=[dual.ipv4, dual.ipv6]) as (both,),
            nodes(net, ["v4"]) as (v4,),
            nodes(net, ["v6"], socket_family=socket.AF_INET6) as (v6,),
        ):
            assert await v4.locate("both", timeout=5) == Location(dual.ipv4, both.location.port)
            assert await v6.locate("both", timeout=5) is not None
            assert await peer_names(both) == {"v4", "v6"}
            assert await v4.locate("v6", timeout=3) is None  # no common family


async def test_ext_ip_addr_list_matches_node_list_by_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork(seed=22) as net:
        dual = net.add_host("dual")
        async with net.open_pycos(
            name="n", node=[dual.ipv4, dual.ipv6], ext_ip_addr=["198.51.100.9"]
        ) as n:
            assert n.location == Location("198.51.100.9", n.location.port)
            status = await n.status()
            assert status is not None
            # The first address is masqueraded, the second (past the list) is not.
            addrs = [loc.addr for loc in status.locations]
            assert addrs[0] == "198.51.100.9"
            assert dual.ipv6 in addrs


async def test_channel_and_rps_locate_reach_peers_found_while_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from triopycos import RPS, Channel

    async with VirtualNetwork(seed=23) as net, nodes(net, ["a"]):
        found: dict[str, Any] = {}
        done = trio.Event()

        async def look() -> None:  # on node a: its context is a's
            found["channel"] = await Channel.locate("news", timeout=30)
            found["rps"] = await RPS.locate("service", timeout=30)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(look)
            await trio.sleep(2)
            async with nodes(net, ["late"]) as (late,):

                async def body(task: Task) -> None:
                    await task.receive()

                channel = Channel("news")
                assert channel.register() == 0
                rps = RPS(body, "service")
                assert rps.register() == 0
                with trio.fail_after(5):
                    await done.wait()
                assert found["channel"].location == late.location
                assert found["rps"].location == late.location


# -- from review: each of these broke a node or a healthy connection ------------------


async def test_a_replayed_announcement_of_a_past_incarnation_touches_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # b1's announcement, replayed (no secret needed) after b2 took b1's place: a
    # dials that address expecting b1; b2 refuses; b2's connection is untouched.
    async with VirtualNetwork(seed=30) as net:
        host = net.add_host("h")
        async with nodes(net, ["a"]) as (a,):
            async with nodes(net, ["b"], node=host.ipv4, tcp_port=9705) as (b1,):
                await all_peered([a, b1])
                assert b1._discovery is not None
                captured = b1._discovery._announcement
            async with nodes(net, ["b"], node=host.ipv4, tcp_port=9705) as (b2,):
                assert a._peers is not None
                with trio.fail_after(5):
                    while b2._node_id not in a._peers.by_id:
                        await a._peers.changed.wait()
                healthy = a._peers.by_id[b2._node_id]
                attacker = await net.add_host("attacker").transport().open_udp("", 0)
                await attacker.sendto(captured, (net.default_subnet.broadcast, 9705))
                await trio.sleep(5)
                assert a._peers.by_id[b2._node_id] is healthy and not healthy.closed
                assert a.peers() == [b2.location]


async def test_two_nodes_advertising_one_gateway_do_not_evict_each_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A misconfiguration (both behind one gateway, same port): each connects out to
    # c; neither may knock the other off (it did, once a second, forever).
    async with VirtualNetwork(seed=31) as net, nodes(net, ["c"], discover_peers=False) as (c,):
        statuses: list[tuple[str, Any]] = []

        async def watch(task: Task) -> None:
            task.set_daemon()
            while True:
                status = await task.receive()
                statuses.append((status.name, status.status))

        c.peer_status(c.spawn(watch))
        gateway = "198.51.100.20"
        async with nodes(
            net, ["A", "B"], ext_ip_addr=gateway, tcp_port=9705, discover_peers=False
        ) as (a, b):
            assert await a.peer(c.location) == 0
            assert await b.peer(c.location) == 0
            await trio.sleep(120)
            assert sorted(statuses) == [("A", PeerStatus.Online), ("B", PeerStatus.Online)]
            assert c._peers is not None and c._peers.stats.connections_accepted == 2


async def test_a_datagram_that_breaks_the_decoder_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import cbor2

    from triopycos.protocol import discovery as wire

    def signed(body: object) -> bytes:  # MAC-valid: from a node with the secret
        data = wire.MAGIC + bytes([wire.DISCOVERY_VERSION]) + cbor2.dumps(body)
        return data + wire._mac(SECRET.encode(), data)

    bad_bodies = [
        {"kind": ["announce"], "id": b"\x01" * 16, "name": "x", "locations": [], "multicast": 0},
        {"kind": {"a": 1}, "id": b"\x01" * 16},
        {
            "kind": "announce",
            "id": b"\x01" * 16,
            "name": "x",
            "multicast": False,
            "locations": [["10.9.0.9%\u00e9", 1]],
        },
    ]
    async with VirtualNetwork(seed=32) as net, nodes(net, ["a", "b"]) as (a, b):
        await all_peered([a, b])
        sock = await net.add_host("x").transport().open_udp("", 0)
        for body in bad_bodies:
            await sock.sendto(signed(body), (net.default_subnet.broadcast, 9705))
        await trio.sleep(1)
        assert a.statistics().datagrams_dropped == len(bad_bodies)
        async with nodes(net, ["c"]) as (c,):  # still serving
            await all_peered([a, b, c])


def test_an_announcement_too_big_fails_when_the_service_is_made() -> None:
    # 255 four-byte characters and 8 long IPv6 addresses (all open_pycos allows)
    # exceed one datagram: the node must fail to start, not die later.
    from types import SimpleNamespace

    from triopycos.services.discovery import Discovery

    ext = [Location(f"2001:db8:{i:x}:ffff:ffff:ffff:ffff:{i:x}", 9705) for i in range(8)]
    peers: Any = SimpleNamespace(node_id=b"\x01" * 16, name="\U0001f600" * 255)
    with pytest.raises(ValueError, match="more than 1400"):
        Discovery(
            transport=None,  # type: ignore[arg-type]
            peers=peers,
            secret="s",
            udp_port=9705,
            addresses=["10.0.0.1"],
            advertised=ext,
            ipv4_multicast=False,
            listen=True,
            announce_interval=None,
        )


async def test_a_long_locate_does_not_leave_peers_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # locate() with no timeout asks every peer; once one answers, the others must not
    # keep a handler waiting for the name for ever (from review).
    async with VirtualNetwork(seed=34) as net, nodes(net, ["a", "b", "c"]) as (a, b, c):
        await all_peered([a, b, c])

        async def holder(task: Task) -> None:
            task.register("x")
            await task.receive()

        held = a.spawn(holder)
        for _ in range(20):
            assert await b.spawn(Task.locate, "x").finish() == held
        assert c._peers is not None
        (to_b,) = [conn for conn in c._peers.by_id.values() if conn.name == "b"]
        assert to_b._nursery is not None
        await trio.sleep(31)  # one round of the peers' waits
        waiting = [t for t in to_b._nursery.child_tasks if "_guarded" in t.name]
        assert waiting == []
        held.send(None)
