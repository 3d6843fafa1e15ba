"""Remote tasks between nodes in one process over real loopback TCP.

Real sockets and the autojump clock do not mix (the clock would jump while a task
waits for the network), so these run on the real clock, each bounded by fail_after.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from conftest import Cluster
from nodes import loopback_node

from triopycos import (
    Channel,
    Location,
    MonitorStatus,
    PeerLost,
    PeerStatus,
    Pycos,
    Task,
)
from triopycos.protocol.handshake import BUSY_REFUSAL
from triopycos.services.limits import Limits

LIMIT = 10  # seconds any one test may take


@contextlib.asynccontextmanager
async def two_nodes(**kwargs: Any) -> AsyncIterator[tuple[Pycos, Pycos]]:
    with trio.fail_after(LIMIT):
        async with loopback_node("a", **kwargs) as a, loopback_node("b", **kwargs) as b:
            assert await b.peer(a.location) == 0
            assert await a.locate("b", timeout=5) == b.location  # a has registered b too
            yield a, b


async def server(task: Task) -> list[Any]:
    task.register("server_task")
    got = []
    while (msg := await task.receive()) is not None:
        got.append(msg)
    return got


async def test_locate_send_deliver_finish() -> None:
    async with two_nodes() as (a, b):
        srv = a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> Any:
            rtask = await Task.locate("server_task", timeout=5)
            assert rtask is not None and rtask == srv and not rtask._local
            assert rtask.location == a.location
            assert rtask.send("one") == 0
            assert await rtask.deliver({"two": (2, {3})}, timeout=5) == 1
            rtask.send(None)
            return await rtask.finish(timeout=5)

        assert await b.spawn(client).finish() == ["one", {"two": (2, {3})}]
        assert a.peers() == [b.location] and b.peers() == [a.location]
        assert await b.locate("a", timeout=5) == a.location


async def test_locate_at_a_location_and_unknown_names() -> None:
    async with two_nodes() as (a, b):
        a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> tuple[Any, Any, Any]:
            here = await Task.locate("server_task", a.location)
            missing = await Task.locate("nobody", a.location)
            quick = await Task.locate("nobody", timeout=0)  # 0: one round, no waiting
            assert here is not None
            here.send(None)
            return here, missing, quick

        here, missing, quick = await b.spawn(client).finish()
        assert here.name == "server" and missing is None and quick is None


async def test_locate_waits_for_a_late_registration_on_a_peer() -> None:
    async def late(task: Task) -> None:
        await trio.sleep(0.3)
        task.register("late")
        await task.receive()

    async with two_nodes() as (a, b):
        a.spawn(late)

        async def client() -> Any:
            found = await Task.locate("late", timeout=5)
            assert found is not None
            found.send("bye")
            return found.name

        assert await b.spawn(client).finish() == "late"


async def test_remote_monitor_terminate_and_exceptions() -> None:
    async def forever(task: Task) -> None:
        task.register("forever")
        await task.receive()

    async def failing(task: Task) -> None:
        task.register("failing")
        await task.receive()
        raise ValueError("remote failure")

    async with two_nodes() as (a, b):
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


async def test_notify_a_remote_monitor() -> None:
    async with two_nodes() as (a, b):

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


async def test_references_travel_to_third_nodes() -> None:
    with trio.fail_after(LIMIT):
        async with (
            loopback_node("a") as a,
            loopback_node("b") as b,
            loopback_node("c") as c,
        ):
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


async def test_channels_across_nodes() -> None:
    async with two_nodes() as (a, _):
        chan = Channel("news")  # innermost block: b
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


async def test_peer_status_and_goodbye_order() -> None:
    statuses: list[Any] = []
    offline = trio.Event()
    with trio.fail_after(LIMIT):
        async with loopback_node("watcher") as w:

            async def watch(task: Task) -> None:
                task.set_daemon()
                while True:
                    status = await task.receive()
                    statuses.append(status)
                    if status.status == PeerStatus.Offline:
                        offline.set()

            w.peer_status(w.spawn(watch))
            async with loopback_node("leaver") as leaver:
                assert await w.peer(leaver.location) == 0

                async def chatter() -> None:
                    target = await Task.locate("sink", timeout=5)
                    assert target is not None
                    for i in range(100):
                        target.send(i)

                async def sink(task: Task) -> None:
                    task.set_daemon()
                    task.register("sink")
                    while True:
                        statuses.append(await task.receive())

                w.spawn(sink)
                await trio.testing.wait_all_tasks_blocked()
                await leaver.spawn(chatter).finish()
            # Leaving the block said goodbye: Offline arrives at once, after the messages.
            with trio.fail_after(2):
                await offline.wait()
            w.peer_status(None)
    first, *numbers, last = statuses
    assert first == PeerStatus(leaver.location, "leaver", PeerStatus.Online)
    assert numbers == list(range(100))
    assert last == PeerStatus(leaver.location, "leaver", PeerStatus.Offline)


async def test_lost_peer_fails_pending_requests_and_fires_monitors() -> None:
    with trio.fail_after(LIMIT):
        async with loopback_node("survivor") as s:
            async with loopback_node("victim") as v:
                v.spawn(server)
                assert await s.peer(v.location) == 0

                async def waiter(task: Task) -> tuple[Any, Any, float]:
                    r = await Task.locate("server_task", timeout=5)
                    assert r is not None
                    assert await task.monitor(r) == 0
                    start = trio.current_time()
                    result = await r.finish()  # no timeout: only the loss can end it
                    return result, await task.receive(timeout=5), trio.current_time() - start

                w = s.spawn(waiter)
                await trio.testing.wait_all_tasks_blocked()
                v.terminate()  # abrupt: no goodbye; the connection just closes
            result, status, waited = await w.finish()
            assert result is None
            assert status.type is PeerLost and status.info.name
            assert waited < 2
            assert s.peers() == []


async def test_stale_reference_after_restart() -> None:
    with trio.fail_after(LIMIT):
        async with loopback_node("client") as c:
            async with loopback_node("server") as first:
                port = first.location.port
                first.spawn(server)
                assert await c.peer(first.location) == 0
                old = await Task.locate("server_task", first.location, timeout=5)
                assert old is not None
                old.send(None)
            async with loopback_node("server", tcp_port=port) as second:
                second.spawn(server)
                assert await c.peer(second.location) == 0
                new = await Task.locate("server_task", second.location, timeout=5)
                assert new is not None and new != old
                assert old.send("stale") == -1
                assert await old.deliver("stale", timeout=2) == 0
                assert await new.deliver("fresh", timeout=2) == 1
                new.send(None)
                assert await new.finish(timeout=5) == ["fresh"]


async def test_wrong_secret_is_refused_on_both_sides(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with trio.fail_after(LIMIT):
        async with loopback_node("a") as a, loopback_node("b", secret="other") as b:
            assert await b.peer(a.location) == -1
            assert a.peers() == [] and b.peers() == []
            assert a.statistics().handshakes_failed == 1
            assert b.statistics().handshakes_failed == 1
    # Each side checks the other's proof, so each logs the failure itself.
    failures = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 2


async def test_close_peer() -> None:
    async with two_nodes() as (a, b):

        async def watch(task: Task) -> Any:
            task.set_daemon()
            while (status := await task.receive()).status != PeerStatus.Offline:
                pass
            return status

        watcher = a.spawn(watch)
        a.peer_status(watcher)
        assert await b.close_peer(a.location) == 0
        assert (await watcher.finish(timeout=2)).location == b.location
        assert a.peers() == []
        assert await b.close_peer(a.location) == -1
        assert await b.peer(a.location) == 0


async def test_unencodable_message_fails_at_send() -> None:
    async with two_nodes() as (a, b):
        a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def client() -> None:
            r = await Task.locate("server_task", timeout=5)
            assert r is not None
            with socket.socket() as sock, pytest.raises(TypeError, match="socket"):
                r.send(sock)
            r.send(None)

        await b.spawn(client).finish()


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with trio.fail_after(LIMIT):
        async with loopback_node("a6", node="::1") as a, loopback_node("b6", node="::1") as b:
            assert await b.peer(a.location) == 0
            assert a.location.addr == "::1"
            assert b.peers() == [a.location]


async def test_peer_port_zero_and_bad_types() -> None:
    async with two_nodes() as (_, b):
        # Port 0: a UDP request to the host's udp_port, sent; no node there listens
        # for discovery (discover_peers=False), so no one connects.
        before = b.peers()
        assert await b.peer("127.0.0.1", udp_port=9) == 0
        assert b.peers() == before
        with pytest.raises(ValueError, match="udp_port"):
            await b.peer("127.0.0.1", udp_port=70000)
        with pytest.raises(TypeError):
            await b.peer(1234)  # type: ignore[arg-type]
        assert await b.peer(Location("127.0.0.1", 1)) == -1  # nothing listens there


async def test_bad_connections_are_refused_and_node_keeps_serving() -> None:
    limits = Limits(handshake_timeout=0.5)
    async with two_nodes(limits=limits) as (a, b):
        a.spawn(server)
        host, port = a.location.addr, a.location.port
        payloads = [
            b"garbage that is not a frame at all",
            b"\xff\xff\xff\xff" + b"x" * 16,  # a 4 GiB length prefix
            b"\x00\x00\x00\x10" + b"\x80\x04\x95" + b"\x00" * 13,  # a pickle payload
        ]
        for payload in payloads:
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(payload)
            with trio.fail_after(2):
                with contextlib.suppress(trio.BrokenResourceError):
                    while await stream.receive_some(4096):
                        pass  # the node answers with its hello and a refusal, then closes
            await stream.aclose()
        silent = await trio.open_tcp_stream(host, port)  # half-open: never speaks
        with trio.fail_after(2):
            with contextlib.suppress(trio.BrokenResourceError):
                while await silent.receive_some(4096):
                    pass  # closed by the node when the handshake deadline passes
        await silent.aclose()
        assert a.statistics().handshakes_failed >= 4

        async def client() -> Any:
            r = await Task.locate("server_task", timeout=5)
            assert r is not None
            assert await r.deliver("still serving", timeout=5) == 1
            r.send(None)
            return await r.finish(timeout=5)

        assert await b.spawn(client).finish() == ["still serving"]


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


async def test_simultaneous_connects_keep_one_connection() -> None:
    with trio.fail_after(LIMIT):
        async with loopback_node("a") as a, loopback_node("b") as b:
            results: list[int] = []

            async def connect(node: Pycos, other: Pycos) -> None:
                results.append(await node.peer(other.location))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect, a, b)
                nursery.start_soon(connect, b, a)
            assert results == [0, 0]
            assert await a.locate("b", timeout=5) == b.location
            assert await b.locate("a", timeout=5) == a.location
            assert a._peers is not None and b._peers is not None
            (ab,) = a._peers.by_id.values()
            (ba,) = b._peers.by_id.values()
            assert ab.initiator_id == ba.initiator_id  # both kept the same connection
            a.spawn(server)
            await trio.testing.wait_all_tasks_blocked()

            async def client() -> Any:
                r = await Task.locate("server_task", timeout=5)
                assert r is not None
                assert await r.deliver("over the survivor", timeout=5) == 1
                r.send(None)
                return await r.finish(timeout=5)

            assert await b.spawn(client).finish() == ["over the survivor"]


async def test_connections_in_handshake_are_capped() -> None:
    limits = Limits(handshake_timeout=5, max_handshakes=2)
    with trio.fail_after(LIMIT):
        async with loopback_node("a", limits=limits) as a:
            host, port = a.location.addr, a.location.port
            silent = [await trio.open_tcp_stream(host, port) for _ in range(2)]
            for stream in silent:
                assert await stream.receive_some(4096)  # its challenge
            extra = await trio.open_tcp_stream(host, port)
            # The oldest makes room: told so and closed at once; the newcomer is served.
            with trio.fail_after(2):
                assert await silent[0].receive_some(4096) == BUSY_REFUSAL
                assert await silent[0].receive_some(4096) == b""
                assert await extra.receive_some(4096)
            assert a.statistics().handshakes_refused_busy == 1
            assert a.statistics().handshakes_pending == 2
            for stream in [*silent, extra]:
                await stream.aclose()


async def test_full_outbox_refuses_instead_of_growing() -> None:
    limits = Limits(max_outbox_bytes=8 * 1024)
    async with two_nodes(limits=limits) as (a, b):
        a.spawn(server)
        await trio.testing.wait_all_tasks_blocked()

        async def flood() -> list[int]:
            r = await Task.locate("server_task", timeout=5)
            assert r is not None
            # No checkpoint between sends: the writer cannot drain, the outbox fills.
            codes = [r.send(b"x" * 1024) for _ in range(20)]
            r.send(None)
            return codes

        codes = await b.spawn(flood).finish()
        assert codes[:7] == [0] * 7 and -1 in codes
        assert b.statistics().messages_refused == codes.count(-1)


async def test_remote_monitor_hears_a_daemon_task_end_when_its_node_leaves() -> None:
    monitoring = trio.Event()
    with trio.fail_after(LIMIT):
        async with loopback_node("stays") as stays:
            async with loopback_node("leaves") as leaves:

                async def daemon(task: Task) -> None:
                    task.set_daemon()
                    task.register("daemon")
                    await trio.sleep_forever()

                leaves.spawn(daemon)
                assert await stays.peer(leaves.location) == 0

                async def watcher(task: Task) -> Any:
                    target = await Task.locate("daemon", timeout=5)
                    assert target is not None
                    assert await task.monitor(target) == 0
                    monitoring.set()
                    return await task.receive(timeout=5)

                watch = stays.spawn(watcher)
                await monitoring.wait()
            # ``leaves`` ended its daemon before saying goodbye: the monitor learns that
            # it was terminated, not merely that its node went away.
            status = await watch.finish()
            assert isinstance(status, MonitorStatus)
            assert status.type is GeneratorExit
            assert isinstance(status.info, Task) and status.info.name == "daemon"


async def _zombie(location: Location, secret: str = "test-secret") -> trio.abc.Stream:
    """Connect and authenticate like a peer, then never speak or read again."""
    import secrets as _secrets

    from triopycos.protocol.auth import derive_key
    from triopycos.protocol.handshake import Handshake

    stream = await trio.open_tcp_stream(location.addr, location.port)
    machine = Handshake(
        initiator=True,
        key=derive_key(secret),
        node_id=_secrets.token_bytes(16),
        name="zombie",
        locations=[("127.0.0.1", 1)],
    )
    await stream.send_all(machine.data_to_send())
    while machine.next_event() is None:
        await stream.send_all(machine.data_to_send())
        machine.receive_data(await stream.receive_some(4096))
    await stream.send_all(machine.data_to_send())
    return stream


async def test_a_silent_peer_goes_offline_after_peer_timeout() -> None:
    with trio.fail_after(LIMIT):
        async with loopback_node("alive", peer_timeout=0.6) as node:

            async def watch(task: Task) -> list[Any]:
                return [await task.receive(), await task.receive()]

            watcher = node.spawn(watch)
            node.peer_status(watcher)
            zombie = await _zombie(node.location)
            online, offline = await watcher.finish()
            assert online.status == PeerStatus.Online and online.name == "zombie"
            assert offline.status == PeerStatus.Offline and node.peers() == []
            await zombie.aclose()


async def test_idle_live_peers_stay_connected_through_heartbeats() -> None:
    async with two_nodes(peer_timeout=0.3) as (a, b):
        await trio.sleep(1.2)  # four timeouts of idleness, kept alive by PINGs
        assert a.peers() == [b.location] and b.peers() == [a.location]


async def test_bad_peer_timeout() -> None:
    for bad in (0, -1, "1"):
        with pytest.raises((ValueError, TypeError)):
            async with loopback_node("x", peer_timeout=bad):
                pass


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


async def test_a_lost_connection_is_re_peered_by_the_side_that_opened_it() -> None:
    limits = Limits(reconnect_delay=0.05)
    async with two_nodes(limits=limits) as (a, b):
        notes: list[Any] = []
        back = trio.Event()

        async def watch(task: Task) -> None:
            task.set_daemon()
            while True:
                notes.append((await task.receive()).status)
                if notes[-2:] == [PeerStatus.Offline, PeerStatus.Online]:
                    back.set()

        b.peer_status(b.spawn(watch))
        assert a._peers is not None
        (conn,) = a._peers.by_id.values()
        conn.close()  # a drops it without a goodbye (as a reset would); b opened it
        with trio.fail_after(5):
            await back.wait()
        assert notes == [PeerStatus.Online, PeerStatus.Offline, PeerStatus.Online]
        assert b.peers() == [a.location] and a.peers() == [b.location]
        # Goodbyes and deliberate closes are not undone.
        assert await b.close_peer(a.location) == 0
        await trio.sleep(0.3)
        assert b.peers() == []


async def test_an_oversized_frame_closes_the_connection_and_is_counted() -> None:
    limits = Limits(max_frame_size=1024)
    with trio.fail_after(LIMIT):
        async with loopback_node("a", limits=limits) as a:

            async def watch(task: Task) -> Any:
                task.set_daemon()
                while (status := await task.receive()).status != PeerStatus.Offline:
                    pass
                return status

            watcher = a.spawn(watch)
            a.peer_status(watcher)
            stream = await _zombie(a.location)  # an authenticated peer...
            await stream.send_all(b"\xff\xff\xff\xff")  # ...announcing a 4 GiB frame
            assert (await watcher.finish()).name == "zombie"  # closed at once
            await stream.aclose()
            assert a.statistics().protocol_errors == 1
