"""What the library tells its user: reconnect attempts and listen failures in words
that say where and why (log lines and errors), and names that survive."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest
import trio
import trio.testing

import triopycos
import triopycos.testing
from triopycos import (
    Limits,
    MonitorStatus,
    PeerLost,
    PycosError,
    ServiceError,
    Task,
    open_pycos,
)
from triopycos.protocol import encode
from triopycos.testing import VirtualNetwork


def lines(caplog: pytest.LogCaptureFixture, part: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if part in r.getMessage()]


async def test_reconnect_attempts_say_which_of_how_many_and_why(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="triopycos")
    limits = Limits(reconnect_attempts=3, reconnect_delay=1.0)
    async with (
        VirtualNetwork(seed=3) as net,
        net.open_pycos(name="b", secret="s", limits=limits) as b,
    ):
        # The name a peer gives itself reaches our log lines escaped.
        async with net.open_pycos(name="srv\n\x1b[2Jx", secret="s") as a:
            where = f"srv\\n\\x1b[2Jx at {a.location}"
            assert await b.peer(a.location) == 0
            net.crash(a)
            await trio.sleep_forever()  # ended by the crash
        await trio.sleep(1 + 2 + 4 + 1)
    attempts = [r for r in caplog.records if r.getMessage().startswith("reconnecting to")]
    assert [r.getMessage() for r in attempts] == [
        f"reconnecting to {where} (attempt 1 of 3): connection lost: "
        + attempts[0].getMessage().split("connection lost: ", 1)[1],
        f"reconnecting to {where} (attempt 2 of 3): cannot connect: connection refused",
        f"reconnecting to {where} (attempt 3 of 3): cannot connect: connection refused",
    ]
    gave_up = lines(caplog, "gave up")
    assert [r.getMessage() for r in gave_up] == [
        f"gave up reconnecting to {where} after 3 attempts: cannot connect: connection refused"
    ]
    for record in [*attempts, *gave_up]:
        assert record.levelno == logging.WARNING
        assert record.name.split(".")[0] == "triopycos"
    # Each failed dial is in the attempt's line, not a warning of its own.
    assert not [r for r in lines(caplog, "cannot connect to") if r.levelno >= logging.WARNING]


async def test_a_healed_partition_is_reported_reconnected(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.WARNING, logger="triopycos")
    limits = Limits(reconnect_attempts=5, reconnect_delay=1.0, connect_timeout=2.0)
    async with (
        VirtualNetwork(seed=3) as net,
        net.open_pycos(name="a", secret="s", peer_timeout=6) as a,
        net.open_pycos(name="b", secret="s", limits=limits, peer_timeout=6) as b,
    ):
        assert await b.peer(a.location) == 0
        net.partition(a, b)
        await trio.sleep(6 + 1 + 2 + 2)  # silent, then attempt 1 (timed out), attempt 2
        net.heal()
        await trio.sleep(60)
        assert b.peers() == [a.location]
    messages = [r.getMessage() for r in lines(caplog, "reconnect")]
    assert messages[0].startswith(
        f"reconnecting to a at {a.location} (attempt 1 of 5): silent: nothing heard for"
    )
    assert (
        messages[1]
        == f"reconnecting to a at {a.location} (attempt 2 of 5): cannot connect: timed out"
    )
    assert messages[-1].startswith(f"reconnected to a at {a.location} (attempt ")
    assert not lines(caplog, "gave up")


async def test_a_node_that_cannot_listen_says_where_and_why() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError) as raised:
            async with open_pycos(node="127.0.0.1", tcp_port=port, discover_peers=False):
                pass  # pragma: no cover - it does not start
    expected = f"cannot listen on 127.0.0.1:{port}: address already in use"
    assert str(raised.value) == f"triopycos service 'network' failed: {expected}"
    # The OSError, with its errno, is still there for code that wants it.
    cause = raised.value.__cause__
    assert cause is not None and str(cause) == expected
    assert isinstance(cause.__cause__, OSError)


async def test_the_same_words_on_the_virtual_network(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with VirtualNetwork() as net, net.open_pycos() as a:
        where = a.location
        with pytest.raises(
            ServiceError, match=f"cannot listen on {where}: address already in use$"
        ):
            async with net.open_pycos(node=where.addr, tcp_port=where.port):
                pass  # pragma: no cover - it does not start


# -- names ------------------------------------------------------------------------------


async def test_a_task_lost_with_its_peer_keeps_its_name(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: Task) -> None:
        task.register("worker")
        task.set_daemon()
        await trio.sleep_forever()

    async def watch(task: Task, observed: Task) -> MonitorStatus:
        assert await task.monitor(observed) == 0
        status: MonitorStatus = await task.receive()
        return status

    async with (
        VirtualNetwork(seed=5) as net,
        net.open_pycos(name="a") as a,
        net.open_pycos(name="b", peer_timeout=6) as b,
    ):
        a.spawn(worker)
        assert await b.peer(a.location) == 0
        remote = await Task.locate("worker", a.location, timeout=5)
        assert remote is not None
        watcher = b.spawn(watch, remote)
        await trio.testing.wait_all_tasks_blocked()
        net.partition(a, b)  # b hears nothing more: PeerLost after peer_timeout
        status = await watcher.finish(timeout=60)
    assert isinstance(status, MonitorStatus) and status.type is PeerLost
    assert isinstance(status.info, Task) and status.info == remote
    assert status.info.name == "worker"
    assert repr(status.info) == repr(remote) and repr(remote).startswith("worker/")


def test_public_types_print_with_their_public_paths() -> None:
    for package in (triopycos, triopycos.testing):
        for name in package.__all__:
            obj = getattr(package, name)
            if isinstance(obj, type):
                assert repr(obj) == f"<class '{package.__name__}.{name}'>"
            elif callable(obj):
                assert f"{obj.__module__}.{obj.__qualname__}" == f"{package.__name__}.{name}"
    assert traceback.format_exception_only(PeerLost("gone")) == ["triopycos.PeerLost: gone\n"]
    try:
        raise ServiceError("network", PycosError("cannot listen"))
    except ServiceError as exc:
        text = "".join(traceback.format_exception(exc))
    assert "triopycos.PycosError: cannot listen" in text
    assert "triopycos.ServiceError: triopycos service 'network' failed" in text
    assert "values.errors" not in text


def test_the_wire_names_of_library_errors_did_not_move() -> None:
    """Printing paths are not wire names: a node of an earlier version still
    rebuilds our errors (and we theirs)."""
    for cls, wire in [
        (PycosError, "triopycos._errors.PycosError"),
        (ServiceError, "triopycos._errors.ServiceError"),
        (PeerLost, "triopycos.PeerLost"),
    ]:
        assert wire.encode() in encode(cls)
