"""Remote tasks between nodes in one process.

Each scenario is written once and runs twice through the ``cluster`` fixture: on real
loopback TCP (real clock) and on the virtual network (autojump clock).  Timings are
checked exactly on the virtual network only (``nodes.virtual``); on TCP they get
loose bounds, and every run is bounded by the cluster's own deadline.

Scenarios that inject faults (partitions, freezes, crashes, latency) are in
``test_virtual_network.py`` and ``test_faults.py``; the few that need real sockets
are at the end of this file.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
import trio
import trio.testing
from conftest import SECRET, Cluster, Nodes
from nodes import (
    PeerLog,
    connection,
    current,
    handshaken,
    locate,
    loopback_node,
    server,
    waiting_target,
)

from triopycos import (
    Channel,
    Limits,
    Location,
    MonitorStatus,
    PeerLost,
    PeerStatus,
    Pycos,
    Task,
)
from triopycos.protocol.handshake import BUSY_REFUSAL

# -- tasks, names and references -----------------------------------------------------


async def test_locate_send_deliver_finish(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as nodes:
        a, b = nodes
        if nodes.virtual:
            assert a.location.addr == "10.0.0.1" and b.location.addr == "10.0.0.2"
        srv = a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> Any:
            rtask = await Task.locate("server_task", timeout=5)
            assert rtask is not None and rtask == srv
            assert rtask.location == a.location != b.location  # a reference, not local
            assert rtask.send("one") == 0
            assert await rtask.deliver({"two": (2, {3})}, timeout=5) == 1
            here = await Task.locate("server_task", a.location)
            assert here == srv and await Task.locate("nobody", timeout=0) is None
            rtask.send(None)
            return await rtask.finish(timeout=5)

        assert await b.spawn(client).finish() == ["one", {"two": (2, {3})}]
        assert a.peers() == [b.location] and b.peers() == [a.location]
        assert await b.locate("a", timeout=5) == a.location


async def test_locate_at_a_location_and_unknown_names(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as nodes:
        a, b = nodes
        a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> tuple[Any, Any, Any]:
            here = await Task.locate("server_task", a.location)
            missing = await Task.locate("nobody", a.location)
            quick = await Task.locate("nobody", timeout=0)  # 0: one round, no waiting
            assert here is not None
            here.send(None)
            return here, missing, quick

        start = trio.current_time()
        here, missing, quick = await b.spawn(client).finish()
        assert here.name == "server" and missing is None and quick is None
        if nodes.virtual:
            assert trio.current_time() == start  # no waiting at all on an instant link


async def test_locate_waits_for_a_late_registration_on_a_peer(cluster: Cluster, clock: Any) -> None:
    async def late(task: Task) -> None:
        await trio.sleep(0.3)
        task.register("late")
        await task.receive()

    async with cluster("a", "b") as (a, b):
        a.spawn(late)

        async def client() -> Any:
            found = await Task.locate("late", timeout=5)
            assert found is not None
            found.send("bye")
            return found.name

        assert await b.spawn(client).finish() == "late"


async def test_remote_monitor_terminate_and_exceptions(cluster: Cluster, clock: Any) -> None:
    async def forever(task: Task) -> None:
        task.register("forever")
        await task.receive()

    async def failing(task: Task) -> None:
        task.register("failing")
        await task.receive()
        raise ValueError("remote failure")

    async with cluster("a", "b") as (a, b):
        a.spawn(forever)
        a.spawn(failing)
        await trio.testing.wait_all_tasks_blocked()

        async def watcher(task: Task) -> list[Any]:
            victim = await Task.locate("forever", timeout=5)
            bad = await Task.locate("failing", timeout=5)
            assert victim is not None and bad is not None
            assert await task.monitor(victim) == 0
            assert await task.monitor(bad) == 0
            assert victim.terminate() == 0
            bad.send("go")
            return [await task.receive(timeout=5) for _ in range(2)]

        statuses = await b.spawn(watcher).finish()
        by_name = {s.info.name: s for s in statuses}
        assert by_name["forever"].type is GeneratorExit
        assert by_name["failing"].type is ValueError
        assert "ValueError: remote failure" in by_name["failing"].value


async def test_notify_a_remote_monitor(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):

        async def boss(task: Task) -> Any:
            task.register("boss")
            return await task.receive(timeout=5)

        async def worker(task: Task) -> str:
            monitor = await Task.locate("boss", timeout=5)
            assert monitor is not None
            assert task.notify(monitor) == 0
            return "worked"

        boss_task = b.spawn(boss)
        await trio.testing.wait_all_tasks_blocked()
        w = a.spawn(worker)
        status = await boss_task.finish()
        assert isinstance(status, MonitorStatus)
        assert status.info == w and status.type is StopIteration and status.value == "worked"


async def test_monitoring_an_ended_remote_task_then_losing_its_node(
    cluster: Cluster, clock: Any
) -> None:
    """(Found by the random fault runs of ``test_faults.py``.)"""
    got: list[Any] = []
    async with cluster("a", peered=False) as nodes:
        (a,) = nodes
        watch = PeerLog(a)
        first = trio.Event()
        async with nodes.open("b") as b:
            b.spawn(waiting_target)
            assert await a.peer(b.location) == 0

            async def watcher(task: Task) -> None:
                task.set_daemon()
                target = await locate("target", b.location)
                target.send("end")
                assert await target.finish(timeout=5) == "done"
                assert await task.monitor(target) == 0  # its status comes at once
                while True:
                    got.append(await task.receive())
                    first.set()

            a.spawn(watcher)
            await first.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert [(s.type, s.value) for s in got] == [(StopIteration, "done")]
        await watch.wait_for(PeerStatus.Offline)  # b has said goodbye
        await trio.testing.wait_all_tasks_blocked()
        assert [(s.type, s.value) for s in got] == [(StopIteration, "done")], got


async def test_references_and_channels_across_three_nodes(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b", "c", peered=False) as (a, b, c):
        assert await b.peer(a.location) == 0
        assert await c.peer(b.location) == 0
        srv = a.spawn(server)

        async def relay(task: Task) -> None:
            task.register("relay")
            target = await Task.locate("server_task", timeout=5)
            forward_to = await task.receive()
            forward_to.send(target)  # a reference to a task on a, sent to c

        async def third(task: Task) -> Any:
            r = await Task.locate("relay", timeout=5)
            assert r is not None
            r.send(task)
            target = await task.receive(timeout=5)
            # c was never peered with a: the reference connects on demand.
            assert await target.deliver("via c", timeout=5) == 1
            target.send(None)
            return target

        b.spawn(relay)
        target = await c.spawn(third).finish()
        assert target == srv
        assert await srv.finish() == ["via c"]
        assert a.location in c.peers()

        with current(c):
            chan = Channel("news")
        assert chan.register() == 0

        async def subscriber(task: Task) -> list[Any]:
            rchan = await Channel.locate("news", timeout=5)
            assert rchan is not None
            assert await rchan.subscribe(task) == 0
            task.send("subscribed")
            return [await task.receive(timeout=5) for _ in range(3)]

        sub = a.spawn(subscriber)
        assert await chan.deliver("first", n=1, timeout=5) == 1
        chan.send("second")
        got = await sub.finish()
        # "subscribed" races with "first" (both follow the subscription).
        assert sorted(got) == ["first", "second", "subscribed"]
        assert got.index("first") < got.index("second")


async def test_sends_to_a_reference_from_a_third_node_keep_their_order(
    cluster: Cluster, clock: Any
) -> None:
    """(Found by the random fault runs of ``test_faults.py``.)"""
    async with cluster("a", "b", "c", peered=False) as (a, b, c):
        srv = a.spawn(server)
        assert await b.peer(a.location) == 0
        assert await c.peer(b.location) == 0  # c is not peered with a

        async def relay(task: Task) -> None:
            task.register("relay")
            target = await locate("server_task", a.location)
            (await task.receive()).send(target)

        async def third(task: Task) -> None:
            (await locate("relay", b.location)).send(task)
            target = await task.receive(timeout=5)
            assert isinstance(target, Task)
            for i in range(10):
                assert target.send(i) == 0  # queued while c connects to a
            target.send(None)

        b.spawn(relay)
        await c.spawn(third).finish()
        assert await srv.finish() == list(range(10))


async def test_channels_across_nodes(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        with current(b):
            chan = Channel("news")
        assert chan.register() == 0

        async def subscriber(task: Task) -> list[Any]:
            rchan = await Channel.locate("news", timeout=5)
            assert rchan is not None
            assert await rchan.subscribe(task) == 0
            return [await task.receive(timeout=5) for _ in range(3)]

        sub = a.spawn(subscriber)
        assert await chan.deliver("first", n=1, timeout=5) == 1
        chan.send("second")

        async def publisher() -> int:
            rchan = await Channel.locate("news", timeout=5)
            assert rchan is not None
            return await rchan.deliver("third", timeout=5)

        assert await a.spawn(publisher).finish() == 1
        assert await sub.finish() == ["first", "second", "third"]


async def test_message_for_unknown_task_is_dropped_and_logged_once(
    cluster: Cluster, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster("a", "b") as (a, b):
        srv = a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> None:
            r = await Task.locate("server_task", timeout=5)
            assert r is not None
            r.send(None)
            await r.finish(timeout=5)
            for _ in range(3):
                assert r.send("to a finished task") == 0  # queued; dropped there
            assert await r.deliver("again", timeout=5) == 0

        await b.spawn(client).finish()
        assert not srv.is_alive()
    hits = [r for r in caplog.records if "unknown task id" in r.getMessage()]
    assert len(hits) == 1


async def test_unencodable_message_fails_at_send(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b") as (a, b):
        srv = a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> None:
            r = await locate("server_task", a.location)
            with socket.socket() as sock, pytest.raises(TypeError, match="socket"):
                r.send(sock)
            with pytest.raises(TypeError, match="cannot encode"):
                r.send(object())
            with pytest.raises(TypeError, match="cannot encode"):
                await r.deliver(lambda: None, timeout=1)
            assert await r.deliver("still fine", timeout=1) == 1
            r.send(None)

        await b.spawn(client).finish()
        assert await srv.finish() == ["still fine"]


async def test_unencodable_results_reach_remote_monitors_and_finish_as_errors(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b") as (a, b):

        async def returns_a_socket(task: Task) -> Any:
            task.register("odd")
            await task.receive()
            return socket  # a module: cannot travel

        odd = a.spawn(returns_a_socket)
        await trio.testing.wait_all_tasks_blocked()

        async def watcher(task: Task) -> tuple[Any, Any]:
            r = await Task.locate("odd", timeout=5)
            assert r is not None
            assert await task.monitor(r) == 0
            async with trio.open_nursery() as nursery:
                result: list[Any] = []

                async def finish() -> None:
                    result.append(await r.finish(timeout=5))

                nursery.start_soon(finish)
                await trio.testing.wait_all_tasks_blocked()  # the request is parked there
                r.send("go")
            return await task.receive(timeout=5), result[0]

        status, result = await b.spawn(watcher).finish()
        assert status.type is TypeError and "cannot encode" in status.value
        assert result is None
        assert await odd.finish() is socket  # locally the value is intact


async def test_stale_reference_after_a_restart_at_the_same_location(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("client", peered=False) as nodes:
        (c,) = nodes
        async with nodes.open("server") as first:
            addr, port = first.location.addr, first.location.port
            first.spawn(server)
            assert await c.peer(first.location) == 0
            old = await locate("server_task", first.location)
            old.send(None)
        async with nodes.open("server", node=addr, tcp_port=port) as second:
            assert second.location == first.location
            second.spawn(server)
            assert await c.peer(second.location) == 0
            new = await locate("server_task", second.location)
            assert new != old
            assert old.send("stale") == -1
            assert await old.deliver("stale", timeout=2) == 0
            assert await new.deliver("fresh", timeout=2) == 1
            new.send(None)
            assert await new.finish(timeout=5) == ["fresh"]


# -- peers: status, goodbyes, losses -------------------------------------------------


@pytest.mark.parametrize("one_mailbox", [True, False], ids=["one-mailbox", "two-mailboxes"])
async def test_peer_status_and_goodbye_order(
    one_mailbox: bool, cluster: Cluster, clock: Any
) -> None:
    """Online, every message of the leaver, then Offline (a goodbye is ordered after
    the messages): in one mailbox that gets both the PeerStatus reports and the
    messages, and in one list that two tasks (one for each) append to."""
    seen: list[Any] = []
    arrived: dict[int, float] = {}
    offline = trio.Event()

    async def watch(task: Task) -> None:
        task.set_daemon()
        if one_mailbox:
            task.register("sink")
        while True:
            seen.append(msg := await task.receive())
            if isinstance(msg, PeerStatus):
                arrived.setdefault(msg.status, trio.current_time())
                if msg.status == PeerStatus.Offline:
                    offline.set()

    async def sink(task: Task) -> None:
        task.set_daemon()
        task.register("sink")
        while True:
            seen.append(await task.receive())

    async with cluster("watcher", peered=False) as nodes:
        (w,) = nodes
        w.peer_status(w.spawn(watch))
        if not one_mailbox:
            w.spawn(sink)
        async with nodes.open("leaver") as leaver:
            if nodes.net is not None:
                nodes.net.set_link(w, leaver, latency=0.01, jitter=0.01)
            assert await w.peer(leaver.location) == 0

            async def chatter() -> None:
                target = await locate("sink", w.location)
                for i in range(100):
                    target.send(i)

            await leaver.spawn(chatter).finish()
        with trio.fail_after(1 if nodes.virtual else 2):  # at once, not after peer_timeout
            await offline.wait()
        w.peer_status(None)
    first, *numbers, last = seen
    assert first == PeerStatus(leaver.location, "leaver", PeerStatus.Online)
    assert numbers == list(range(100))
    assert last == PeerStatus(leaver.location, "leaver", PeerStatus.Offline)
    if nodes.virtual:
        assert arrived[PeerStatus.Offline] - arrived[PeerStatus.Online] < 1


async def test_a_terminated_peer_fails_pending_requests_and_fires_monitors(
    cluster: Cluster, clock: Any
) -> None:
    """``terminate()``: no goodbye (unlike leaving the block); the connection just
    closes."""
    async with cluster("survivor", peered=False) as nodes:
        (s,) = nodes
        watch = PeerLog(s)
        async with nodes.open("victim") as v:
            v.spawn(server)
            assert await s.peer(v.location) == 0
            monitoring = trio.Event()

            async def waiter(task: Task) -> tuple[Any, Any, float]:
                r = await locate("server_task", v.location)
                assert await task.monitor(r) == 0
                monitoring.set()
                result = await r.finish()  # no timeout: only the loss can end it
                return result, await task.receive(timeout=5), trio.current_time()

            w = s.spawn(waiter)
            await monitoring.wait()
            terminated_at = trio.current_time()
            v.terminate()
        result, status, ended_at = await w.finish()
        assert result is None
        assert isinstance(status, MonitorStatus) and status.type is PeerLost
        assert isinstance(status.info, Task) and status.info.name
        offline_at = await watch.wait_for(PeerStatus.Offline)
        assert ended_at - terminated_at < 2
        if nodes.virtual:
            assert ended_at == terminated_at == offline_at
        assert s.peers() == []


async def test_remote_monitor_hears_a_daemon_task_end_when_its_node_leaves(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("stays", peered=False) as nodes:
        (stays,) = nodes
        async with nodes.open("leaves") as leaves:

            async def daemon(task: Task) -> None:
                task.set_daemon()
                task.register("daemon")
                await trio.sleep_forever()

            leaves.spawn(daemon)
            assert await stays.peer(leaves.location) == 0
            monitoring = trio.Event()

            async def watcher(task: Task) -> list[Any]:
                assert await task.monitor(await locate("daemon", leaves.location)) == 0
                monitoring.set()
                statuses = [await task.receive(timeout=5)]
                # Nothing more: None (after a while that costs nothing on virtual time).
                statuses.append(await task.receive(timeout=5 if nodes.virtual else 0.5))
                return statuses

            watch = stays.spawn(watcher)
            await monitoring.wait()
        # ``leaves`` ended its daemon before saying goodbye: the monitor learns that
        # it was terminated, not merely that its node went away (and only that).
        status, nothing = await watch.finish()
        assert isinstance(status, MonitorStatus) and status.type is GeneratorExit
        assert isinstance(status.info, Task) and status.info.name == "daemon"
        assert nothing is None


async def test_close_peer(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b", limits=Limits(reconnect_delay=0.1)) as nodes:
        a, b = nodes
        watch = PeerLog(a)
        closed_at = trio.current_time()
        assert await b.close_peer(a.location) == 0
        with trio.fail_after(2):
            offline_at = await watch.wait_for(PeerStatus.Offline)
        if nodes.virtual:
            assert offline_at == closed_at
        assert watch.log[-1][1].location == b.location
        assert a.peers() == [] and b.peers() == []
        await trio.sleep(5 if nodes.virtual else 0.5)  # a deliberate close: nobody reconnects
        assert a.peers() == [] and b.peers() == []
        assert await b.close_peer(a.location) == -1
        assert await b.peer(a.location) == 0


async def test_a_lost_connection_is_re_peered_by_the_side_that_opened_it(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b", limits=Limits(reconnect_delay=0.05)) as nodes:
        a, b = nodes
        watch = PeerLog(b)
        dropped_at = trio.current_time()
        connection(a).close()  # a drops it without a goodbye (as a reset would); b opened it
        with trio.fail_after(5):
            back = await watch.wait_for(PeerStatus.Online, 2)
        if nodes.virtual:
            assert back - dropped_at == pytest.approx(0.05)  # after reconnect_delay
        assert watch.kinds() == ["Online", "Offline", "Online"]
        assert b.peers() == [a.location] and a.peers() == [b.location]
        # Goodbyes and deliberate closes are not undone.
        assert await b.close_peer(a.location) == 0
        await trio.sleep(5 if nodes.virtual else 0.3)  # many reconnect delays: nobody does
        assert b.peers() == [] and a.peers() == []


async def test_idle_live_peers_stay_connected_through_heartbeats(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b", peer_timeout=0.3) as (a, b):
        await trio.sleep(1.2)  # four timeouts of idleness, kept alive by PINGs
        assert a.peers() == [b.location] and b.peers() == [a.location]


async def test_a_silent_peer_goes_offline_after_peer_timeout(
    cluster: Cluster, clock: Any, transport_kind: str
) -> None:
    peer_timeout = 6 if transport_kind == "virtual" else 0.6
    async with cluster("alive", peered=False, peer_timeout=peer_timeout) as nodes:
        (node,) = nodes
        watch = PeerLog(node)
        claimed = "10.0.0.99" if nodes.virtual else "127.0.0.1"
        stream = await handshaken(await nodes.open_stream(node.location), SECRET, claimed)
        online = await watch.wait_for(PeerStatus.Online)
        offline = await watch.wait_for(PeerStatus.Offline)
        assert [s.name for _, s in watch.log] == ["zombie", "zombie"]
        if nodes.virtual:
            assert 6 <= offline - online <= 6 + 2 + 0.01  # peer_timeout + one heartbeat
        assert node.peers() == []
        await stream.aclose()


async def test_simultaneous_connects_keep_one_connection(
    cluster: Cluster, clock: Any, transport_kind: str
) -> None:
    for latency in (0.0, 0.05) if transport_kind == "virtual" else (0.0,):
        async with cluster("a", "b", peered=False) as nodes:
            await connect_both_ways_at_once(nodes, latency)


async def connect_both_ways_at_once(nodes: Nodes, latency: float) -> None:
    a, b = nodes
    if nodes.net is not None:
        nodes.net.set_link(a, b, latency=latency)
    watch_a, watch_b = PeerLog(a), PeerLog(b)
    results: list[int] = []

    async def connect(node: Pycos, other: Pycos) -> None:
        results.append(await node.peer(other.location))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect, a, b)
        nursery.start_soon(connect, b, a)
    assert results == [0, 0]
    assert await a.locate("b", timeout=5) == b.location
    assert await b.locate("a", timeout=5) == a.location
    await trio.testing.wait_all_tasks_blocked()  # the loser is gone by now
    # Both kept the same connection (no public API tells which one that is).
    assert connection(a).initiator_id == connection(b).initiator_id
    assert watch_a.kinds() == watch_b.kinds() == ["Online"]  # the loser went quietly
    a.spawn(server)
    await trio.testing.wait_all_tasks_blocked()

    async def client() -> Any:
        r = await locate("server_task", a.location)
        assert await r.deliver("over the survivor", timeout=5) == 1
        r.send(None)
        return await r.finish(timeout=5)

    assert await b.spawn(client).finish() == ["over the survivor"]


async def test_peer_refuses_port_zero_bad_types_and_nobody_there(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b", peered=False) as nodes:
        a, b = nodes
        # Port 0 asks the host's nodes by UDP: sent (0), but ``a`` does not listen for
        # discovery datagrams (discover_peers=False), so nobody connects.  (On TCP, to
        # port 9: no other process's node on this machine may hear it.)
        if nodes.virtual:
            assert await b.peer(a.location.addr) == 0
        else:
            assert await b.peer(a.location.addr, udp_port=9) == 0
        with pytest.raises(ValueError, match="udp_port"):
            await b.peer(a.location.addr, udp_port=70000)
        with pytest.raises(TypeError):
            await b.peer(1234)  # type: ignore[arg-type]
        assert await b.peer(Location(a.location.addr, 1)) == -1  # nothing listens there
        if nodes.virtual:  # (on TCP, tests may not send beyond the loopback)
            assert await b.peer(Location("10.9.9.9", 9705)) == -1  # no such host
        assert b.peers() == []


# -- limits, hostile and broken peers ------------------------------------------------


async def test_wrong_secret_is_refused_on_both_sides(
    cluster: Cluster, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with cluster("a", peered=False) as nodes, nodes.open("b", secret="other") as b:
        (a,) = nodes
        assert await b.peer(a.location) == -1
        assert a.peers() == [] and b.peers() == []
        assert a.statistics().handshakes_failed == 1
        assert b.statistics().handshakes_failed == 1
    # Each side checks the other's proof, so each logs the failure itself.
    failures = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 2, [r.getMessage() for r in caplog.records]


async def test_bad_connections_are_refused_and_node_keeps_serving(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", "b", limits=Limits(handshake_timeout=0.5)) as nodes:
        a, b = nodes
        a.spawn(server)
        payloads = [
            b"garbage that is not a frame at all",
            b"\xff\xff\xff\xff" + b"x" * 16,  # a 4 GiB length prefix
            b"\x00\x00\x00\x10" + b"\x80\x04\x95" + b"\x00" * 13,  # a pickle payload
        ]
        for payload in payloads:
            stream = await nodes.open_stream(a.location)
            await stream.send_all(payload)
            with trio.fail_after(2):
                try:
                    while await stream.receive_some(4096):
                        pass  # the node answers with its hello and a refusal, then closes
                except trio.BrokenResourceError:
                    pass
            await stream.aclose()
        silent = await nodes.open_stream(a.location)  # half-open: never speaks
        start = trio.current_time()
        with trio.fail_after(2):
            try:
                while await silent.receive_some(4096):
                    pass  # closed by the node when the handshake deadline passes
            except trio.BrokenResourceError:
                pass
        if nodes.virtual:
            assert trio.current_time() - start == pytest.approx(0.5)  # the deadline
        await silent.aclose()
        assert a.statistics().handshakes_failed >= 4

        async def client() -> Any:
            r = await locate("server_task", a.location)
            assert await r.deliver("still serving", timeout=5) == 1
            r.send(None)
            return await r.finish(timeout=5)

        assert await b.spawn(client).finish() == ["still serving"]


async def test_connections_in_handshake_are_capped(cluster: Cluster, clock: Any) -> None:
    limits = Limits(handshake_timeout=5, max_handshakes=2)
    async with cluster("a", peered=False, limits=limits) as nodes:
        (a,) = nodes
        silent = [await nodes.open_stream(a.location) for _ in range(2)]
        for stream in silent:
            assert await stream.receive_some(4096)  # its challenge
        extra = await nodes.open_stream(a.location)
        # The oldest makes room: told so and closed at once; the newcomer is served.
        with trio.fail_after(1 if nodes.virtual else 2):
            assert await silent[0].receive_some(4096) == BUSY_REFUSAL
            assert await silent[0].receive_some(4096) == b""
            assert await extra.receive_some(4096)
        assert a.statistics().handshakes_refused_busy == 1
        assert a.statistics().handshakes_pending == 2
        for stream in [*silent, extra]:
            await stream.aclose()


async def test_full_outbox_refuses_instead_of_growing(cluster: Cluster, clock: Any) -> None:
    async with cluster("a", "b", limits=Limits(max_outbox_bytes=8 * 1024)) as (a, b):
        srv = a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def flood() -> list[int]:
            r = await locate("server_task", a.location)
            # No checkpoint between sends: the writer cannot drain, the outbox fills.
            codes = [r.send(b"x" * 1024) for _ in range(20)]
            await trio.testing.wait_all_tasks_blocked()
            codes.append(r.send(b"y"))  # drained by now: room again
            r.send(None)
            return codes

        codes = await b.spawn(flood).finish()
        assert codes[:7] == [0] * 7 and -1 in codes and codes[-1] == 0
        assert b.statistics().messages_refused == codes.count(-1)
        got = await srv.finish()
        assert len(got) == codes.count(0) and got[-1] == b"y"


async def test_an_oversized_frame_closes_the_connection_and_is_counted(
    cluster: Cluster, clock: Any
) -> None:
    async with cluster("a", peered=False, limits=Limits(max_frame_size=1024)) as nodes:
        (a,) = nodes
        watch = PeerLog(a)
        stream = await handshaken(await nodes.open_stream(a.location), SECRET)  # a peer...
        await stream.send_all(b"\xff\xff\xff\xff")  # ...announcing a 4 GiB frame
        with trio.fail_after(2):
            await watch.wait_for(PeerStatus.Offline)  # closed at once
        assert [s.name for _, s in watch.log] == ["zombie", "zombie"]
        await stream.aclose()
        assert a.statistics().protocol_errors == 1


# -- real sockets only ---------------------------------------------------------------

LIMIT = 10  # seconds any one TCP-only test may take


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with trio.fail_after(LIMIT):
        async with loopback_node("a6", node="::1") as a, loopback_node("b6", node="::1") as b:
            assert await b.peer(a.location) == 0
            assert a.location.addr == "::1"
            assert b.peers() == [a.location]


async def test_bad_peer_timeout() -> None:
    for bad in (0, -1, "1"):
        with pytest.raises((ValueError, TypeError)):
            async with loopback_node("x", peer_timeout=bad):
                pass
