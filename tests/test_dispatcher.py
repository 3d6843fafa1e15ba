"""The dispatcher of peer messages (issue 17, item 4): every request gets its reply,
whether its handler meets a malformed message (the peer's fault: logged once, briefly,
with the peer's values escaped and bounded) or raises by a bug of its own (logged as
an error with its traceback); either way the session and the node go on serving.

Requests are written raw with the connection's ``request_raw`` and ``send_raw``
(as a faulty or hostile peer could), on the virtual network under the autojump clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.testing
from nodes import connection, current, virtual_pair

from triopycos import RPS, Channel, MonitorStatus, Pycos, Task
from triopycos._node_names import NameRegistry
from triopycos.protocol.messages import Kind, RpsCall
from triopycos.services.peer import PeerConnection


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[Pycos, Pycos, PeerConnection]]:
    """Nodes ``a`` (serving) and ``b``, peered, and ``b``'s connection to ``a``."""
    async with virtual_pair() as (_, a, b):
        yield a, b, connection(b)


async def keeper(task: Task) -> None:
    task.set_daemon()
    task.register("keeper")
    await task.receive()


async def ask(conn: PeerConnection, kind: int, *fields: Any) -> tuple[Any, float]:
    """The reply to a raw request, and how long it took (the bound is far longer)."""
    start = trio.current_time()
    reply = await conn.request_raw(kind, *fields, timeout=30)
    return reply, trio.current_time() - start


async def still_serving(a: Pycos, b: Pycos, conn: PeerConnection) -> None:
    """The session is the same one, and it still serves."""
    assert not conn.closed and connection(b) is conn  # b's only connection
    assert await ask(conn, Kind.ECHO) == (True, 0)
    assert a.peers() == [b.location]


MALFORMED: list[tuple[str, int, list[Any], Any]] = [
    # name, kind, fields after the request id, the kind's failure value
    ("task id not an int", Kind.TASK_DELIVER, ["1", "m"], 0),
    ("too few fields", Kind.TASK_DELIVER, [1], 0),
    ("monitor not a task", Kind.TASK_MONITOR, [1, "me"], -1),
    ("timeout a huge list", Kind.TASK_FINISH, [1, list(range(100_000))], None),
    ("timeout NaN", Kind.TASK_FINISH, [1, float("nan")], None),
    ("unhashable task id", Kind.TASK_ALIVE, [[1]], False),
    ("what to locate", Kind.LOCATE, ["node\n\x1b[31mFORGED", "n", None], None),
    ("channel name a big int", Kind.CHANNEL_DELIVER, [10**300, "m", None, 0], 0),
    ("n below 0", Kind.CHANNEL_DELIVER, ["c", "m", None, -1], 0),
    ("send id not bytes", Kind.CHANNEL_DELIVER, ["c", "m", None, 0, ["x", 1]], 0),
    ("hops not an int", Kind.CHANNEL_DELIVER, ["c", "m", None, 0, [b"x", "1"]], 0),
    ("subscriber a str", Kind.CHANNEL_SUBSCRIBE, ["c", "sub", None], -1),
    ("extra field", Kind.ECHO, ["more"], False),
]


@pytest.mark.parametrize(
    ("kind", "fields", "failure"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
async def test_a_malformed_request_gets_its_failure_value_at_once(
    kind: int,
    fields: list[Any],
    failure: Any,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    caplog.set_level(logging.INFO)
    async with two_nodes() as (a, b, conn):
        with current(a):
            assert Channel("c").register() == 0
        for _ in range(3):
            assert await ask(conn, kind, *fields) == (failure, 0)
        await still_serving(a, b, conn)
    said = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]  # once, not per message
    (record,) = said
    assert record.levelno == logging.WARNING and record.exc_info is None
    text = record.getMessage()
    assert len(text) < 300 and "\n" not in text and "\x1b" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_malformed_one_way_messages_are_dropped_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    async with two_nodes() as (a, b, conn):
        for bad in (
            [Kind.TASK_SEND, "1", "m"],
            [Kind.TASK_SEND, 1],
            [Kind.CHANNEL_SEND, ["c"], "m"],
            [Kind.CHANNEL_SEND, "c", "m", [b"x", 257]],  # more hops than MAX_HOPS
            [Kind.TASK_RESULT, None, 1],
            [Kind.REPLY, "1", None],
            [99, 1, 2],
            ["kind", 1],
        ):
            assert conn.send_raw(bad) == 0
        await still_serving(a, b, conn)
    said = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(said) == 5, said  # once per known kind, once for every unknown one
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_bug_in_a_handler_is_logged_with_its_traceback_and_answered(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handler that raises by a bug of this node (here: adding a monitor) answers
    the request with its failure value, says so loudly, and keeps the session."""

    def broken(self: Task, *args: object) -> int:
        raise RuntimeError("a bug in _add_monitor")

    async with two_nodes() as (a, b, conn):
        target = a.spawn(keeper)
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.setattr(Task, "_add_monitor", broken)
        watcher = b.spawn(keeper)
        for _ in range(2):
            assert await ask(conn, Kind.TASK_MONITOR, target._task_id, watcher) == (-1, 0)
        await still_serving(a, b, conn)
    bugs = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(bugs) == 2  # every time: a bug is never quiet
    for record in bugs:
        assert "a bug of this node" in record.getMessage() and "TASK_MONITOR" in record.getMessage()
        assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]


async def test_a_bug_in_a_waiting_handler_is_answered_at_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handler that waits (here: locate with a timeout) and then fails still
    answers: the caller does not wait out its timeout."""

    async def broken(*args: Any) -> Any:
        await trio.sleep(1)
        raise KeyError("a bug in NameRegistry.wait_for")

    async with two_nodes() as (a, b, conn):
        monkeypatch.setattr(NameRegistry, "wait_for", broken)
        assert await ask(conn, Kind.LOCATE, "task", "nobody", 20) == (None, 1)
        await still_serving(a, b, conn)
    (bug,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "a bug of this node" in bug.getMessage() and "LOCATE" in bug.getMessage()
    assert bug.exc_info is not None and isinstance(bug.exc_info[1], KeyError)


async def test_monitoring_an_ended_task_whose_exit_value_cannot_travel(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """The issue's example of a bug of ours taken for the peer's bad message: the
    monitor is told that the exit status could not be sent, as a monitor that was
    there before the end is."""

    async def returns_a_lock() -> Any:
        return trio.Lock()  # cannot be encoded

    async with two_nodes() as (a, b, conn):
        ended = a.spawn(returns_a_lock)
        await ended.finish()
        got: list[Any] = []

        async def watcher(task: Task) -> None:
            ref = Task._reference(b, ended._triopycos_ref_())  # as a message would carry it
            assert await task.monitor(ref) == 0
            got.append(await task.receive(timeout=5))

        await b.spawn(watcher).finish()
        await still_serving(a, b, conn)
    (status,) = got
    assert isinstance(status, MonitorStatus) and status.type is TypeError
    assert isinstance(status.value, str) and "exit status not sent" in status.value
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]


async def test_task_ids_whose_hashes_collide_are_refused_in_bounded_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pushed results are kept by (node, task id): ids chosen by the peer as
    multiples of 2**61 - 1 all hash alike, and inserting many took quadratic time.
    Task ids are refused outside 1..2**63 - 1, so they never get that far."""
    async with two_nodes() as (a, b, conn):
        for k in range(1, 2001):
            assert conn.send_raw([Kind.TASK_RESULT, k * (2**61 - 1) * 2**64, None]) == 0
        for bad in (0, -1, 2**63):
            assert conn.send_raw([Kind.TASK_RESULT, bad, None]) == 0
        await still_serving(a, b, conn)
        assert not a._remote._results  # none was kept


async def test_a_reply_of_the_wrong_type_is_a_failure_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A peer answering a deliver, monitor or subscription with Decimal('sNaN'):
    comparing it with an int raises InvalidOperation, so the caller checks the type
    first and sees the failure value."""
    async with two_nodes() as (a, b, conn):
        with current(a):
            a.spawn(keeper)
            assert Channel("c").register() == 0

        async def client(task: Task) -> list[int]:
            target = await Task.locate("keeper", a.location, timeout=5)
            channel = await Channel.locate("c", a.location, timeout=5)
            assert target is not None and channel is not None

            async def snan(*_: Any, **__: Any) -> Decimal:
                await trio.lowlevel.checkpoint()
                return Decimal("sNaN")

            monkeypatch.setattr(conn, "request", snan)
            return [
                await target.deliver("m", timeout=5),
                await task.monitor(target),
                await channel.subscribe(task),
            ]

        assert await b.spawn(client).finish() == [0, -1, -1]


async def test_a_failed_rps_calls_reply_is_logged_escaped(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """The caller logs why a remote call failed: the reply is the serving peer's
    value, so its text is escaped and bounded (a hostile server's newlines and
    terminal codes cannot forge log lines), and any other value is named by type."""

    async def service() -> None:
        pass

    async with two_nodes() as (a, b, _conn):
        with current(a):
            assert RPS(service).register() == 0
        replies: list[Any] = [
            ValueError("nope\n2099-01-01 CRITICAL forged \x1b[2J" + "x" * 1000),
            "text\nCRITICAL forged",
        ]

        def hostile(peer: PeerConnection, message: RpsCall) -> None:
            peer.reply(message, replies.pop(0))  # a hostile, authenticated server

        a._remote._on_rps_call = hostile  # type: ignore[method-assign, assignment]

        async def caller() -> list[Any]:
            rps = await RPS.locate("service", a.location, timeout=5)
            assert rps is not None
            return [await rps(), await rps()]

        caplog.set_level(logging.WARNING, logger="triopycos")
        assert await b.spawn(caller).finish() == [None, None]
    lines = [r.getMessage() for r in caplog.records if "call of" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line and "\x1b" not in line and len(line) < 500, repr(line)
    assert "ValueError: nope\\n2099-01-01 CRITICAL forged \\x1b[2J" in lines[0]
    assert lines[1].endswith("failed: 'text\\nCRITICAL forged'")
