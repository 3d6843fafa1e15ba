"""The listener service accepts as trio's ``serve_listeners`` does: only the errors
that say the system is out of capacity (EMFILE, ENFILE, ENOMEM, ENOBUFS) are tried
again, after a pause; any other failure of ``accept`` ends the service, and so the
node, with an error that says where and why."""

from __future__ import annotations

import errno
import math
import os
from typing import Any

import pytest
import trio
import trio.testing
from nodes import wait_for

from triopycos import ServiceError, open_pycos
from triopycos._exception_groups import exception_leaves
from triopycos.services.listener import CAPACITY_DELAY, ListenerService
from triopycos.transport import TCPTransport
from triopycos.transport.errors import ACCEPT_CAPACITY_ERRNOS, AcceptFailed

WHERE = "127.0.0.1:4"


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class ScriptedListener(trio.abc.Listener[trio.abc.Stream]):
    """Fails its first accepts with ``failures``, then hands out ``streams``, then
    waits forever."""

    def __init__(self, failures: list[BaseException], streams: list[trio.abc.Stream]) -> None:
        self.failures = failures
        self.streams = streams
        self.accepts = 0
        self.closed = False

    async def accept(self) -> trio.abc.Stream:
        self.accepts += 1
        await trio.lowlevel.checkpoint()
        if self.failures:
            raise self.failures.pop(0)
        if self.streams:
            return self.streams.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def service_on(
    listener: ScriptedListener, accepted: list[tuple[trio.abc.Stream, float]]
) -> ListenerService:
    return ListenerService(
        [listener],
        lambda stream: accepted.append((stream, trio.current_time())),
        lambda _: WHERE,
    )


@pytest.mark.parametrize("code", sorted(ACCEPT_CAPACITY_ERRNOS))
async def test_capacity_errors_are_tried_again_after_a_pause(
    code: int, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    stream, _ = trio.testing.memory_stream_pair()
    listener = ScriptedListener([os_error(code)] * 3, [stream])
    accepted: list[tuple[trio.abc.Stream, float]] = []
    service = service_on(listener, accepted)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    # Three pauses, then the connection; then it waits for the next.
    ((got, when),) = accepted
    assert got is stream and when == pytest.approx(3 * CAPACITY_DELAY)
    assert listener.accepts == 5
    assert listener.closed
    stats = service.statistics()
    assert (stats.listeners, stats.accepted, stats.capacity_errors) == (1, 1, 3)
    # One line when it starts failing, one when it works again; not one per try.
    assert [r.getMessage() for r in caplog.records if r.name == "triopycos.listener"] == [
        f"accepting on {WHERE} failed: {_reason(code)}; trying again every {CAPACITY_DELAY} s",
        f"accepting on {WHERE} again, after 3 failed attempt(s)",
    ]


@pytest.mark.parametrize("code", [errno.EBADF, errno.EINVAL, errno.ENOTSOCK, errno.EPERM])
async def test_other_accept_errors_end_the_service_at_once(
    code: int, autojump_clock: trio.testing.MockClock
) -> None:
    listener = ScriptedListener([os_error(code)], [])
    service = service_on(listener, [])
    with trio.fail_after(5), pytest.raises(BaseExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve)
    (failure,) = exception_leaves(raised.value)
    assert isinstance(failure, AcceptFailed)
    assert str(failure) == f"cannot accept connections on {WHERE}: {_reason(code)}"
    assert isinstance(failure.__cause__, OSError) and failure.__cause__.errno == code
    # No retry, no pause; the listener is closed.
    assert listener.accepts == 1
    assert trio.current_time() == 0
    assert listener.closed
    assert service.statistics().capacity_errors == 0


async def test_a_listener_closed_under_the_loop_ends_it_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed_under = ScriptedListener([trio.ClosedResourceError("closed")], [])
    other = ScriptedListener([], [])
    service = ListenerService([closed_under, other], lambda stream: None, lambda _: WHERE)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        await trio.sleep(1)
        # The other listener still accepts.
        assert (closed_under.accepts, other.accepts) == (1, 1)
        nursery.cancel_scope.cancel()
    assert closed_under.closed and other.closed


async def test_listeners_are_closed_when_the_service_is_cancelled_at_once() -> None:
    listeners = [ScriptedListener([], []) for _ in range(3)]
    service = ListenerService(listeners, lambda stream: None, lambda _: WHERE)
    with trio.CancelScope() as scope:
        scope.cancel()
        await service.serve()
    assert all(listener.closed for listener in listeners)


def _reason(code: int) -> str:
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


# -- on a node ------------------------------------------------------------------------


class Breakable(trio.abc.Listener[trio.abc.Stream]):
    """A real listener whose accepts fail with ``failures`` first, and afterwards
    with ``broken`` once that is set."""

    def __init__(self, inner: trio.abc.Listener[trio.abc.Stream]) -> None:
        self.inner = inner
        self.failures: list[OSError] = []
        self.broken: OSError | None = None
        self.wake = trio.Event()

    async def accept(self) -> trio.abc.Stream:
        if self.failures:
            await trio.lowlevel.checkpoint()
            raise self.failures.pop(0)
        async with trio.open_nursery() as nursery:
            accepted: list[trio.abc.Stream] = []

            async def take() -> None:
                accepted.append(await self.inner.accept())
                nursery.cancel_scope.cancel()

            nursery.start_soon(take)
            await self.wake.wait()
            nursery.cancel_scope.cancel()
        if accepted:
            return accepted[0]
        assert self.broken is not None
        raise self.broken

    def break_with(self, error: OSError) -> None:
        self.broken = error
        self.wake.set()

    async def aclose(self) -> None:
        await self.inner.aclose()


class BreakableTransport(TCPTransport):
    def __init__(self, failures: list[OSError]) -> None:
        super().__init__()
        self.failures = failures
        self.listeners: list[Breakable] = []

    async def open_listeners(
        self, host: str, port: int
    ) -> list[trio.abc.Listener[trio.abc.Stream]]:
        opened = [Breakable(inner) for inner in await super().open_listeners(host, port)]
        for listener in opened:
            listener.failures = list(self.failures)
        self.listeners += opened
        return list(opened)

    def listener_address(self, listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int]:
        assert isinstance(listener, Breakable)
        return super().listener_address(listener.inner)


async def test_a_node_out_of_descriptors_for_a_moment_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = BreakableTransport([os_error(errno.EMFILE)] * 2)
    common: dict[str, Any] = {
        "node": "127.0.0.1",
        "tcp_port": 0,
        "discover_peers": False,
        "secret": "s",
    }
    with trio.fail_after(20):
        async with (
            open_pycos(name="a", transport=transport, **common) as a,
            open_pycos(name="b", **common) as b,
        ):
            assert await b.peer(a.location) == 0
            assert b.peers() == [a.location]
            await wait_for(lambda: a.peers() == [b.location])
    assert any(
        r.getMessage().startswith(f"accepting on {a.location} failed: too many open files")
        for r in caplog.records
    )


async def test_a_node_whose_listener_breaks_stops_with_a_service_error() -> None:
    transport = BreakableTransport([])
    common: dict[str, Any] = {"node": "127.0.0.1", "tcp_port": 0, "discover_peers": False}
    where = None
    with trio.fail_after(20), pytest.raises(ServiceError) as raised:
        async with open_pycos(transport=transport, **common) as pycos:
            where = pycos.location
            (listener,) = transport.listeners
            listener.break_with(os_error(errno.EINVAL))
            await trio.sleep(math.inf)
    assert str(raised.value) == (
        f"triopycos service 'network' failed: cannot accept connections on {where}: "
        "invalid argument"
    )
    # The library's sentence, caused by the system's error (with its errno).
    cause = raised.value.__cause__
    assert cause is not None and str(cause).startswith("cannot accept connections on")
    assert isinstance(cause.__cause__, OSError) and cause.__cause__.errno == errno.EINVAL
