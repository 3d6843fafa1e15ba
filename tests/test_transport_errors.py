"""Transport errors are mapped in one place (``triopycos.transport.errors``): every
``OSError`` a transport raises reaches the services as one of its classes, with the
same words on every transport and the system's error as the cause."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest
import trio
import trio.testing

from triopycos.testing import VirtualNetwork
from triopycos.transport import (
    DatagramSocket,
    TCPTransport,
    Transport,
    os_error_reason,
    thread_socket,
)
from triopycos.transport.errors import (
    STREAM_ERRORS,
    AcceptFailed,
    ConnectFailed,
    DatagramFailed,
    ListenFailed,
    MappedDatagramSocket,
    OutOfCapacity,
    TransportError,
    accept,
    connect,
    listen,
    open_datagram_socket,
    stream_error,
)


def test_reasons_are_the_system_words_without_the_number() -> None:
    assert os_error_reason(OSError(errno.ECONNREFUSED, "whatever")) == "connection refused"
    assert os_error_reason(OSError("no errno here")) == "no errno here"
    assert os_error_reason(OSError()) == "OSError"


def test_stream_errors_are_trio_s() -> None:
    closed = stream_error(OSError(errno.EBADF, "bad"), "write", closed=True)
    assert isinstance(closed, trio.ClosedResourceError)
    broken = stream_error(OSError(errno.EPIPE, "Broken pipe"), "write", closed=False)
    assert isinstance(broken, trio.BrokenResourceError)
    assert str(broken) == "socket write failed: [Errno 32] Broken pipe"
    assert (trio.BrokenResourceError, trio.ClosedResourceError) == STREAM_ERRORS


# -- connecting -----------------------------------------------------------------------


async def test_a_refused_connection_is_connect_failed() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectFailed) as raised:
            await connect(TCPTransport(), "127.0.0.1", port, 10)
    assert raised.value.reason == "connection refused"
    assert "127.0.0.1" in raised.value.detail or "refused" in raised.value.detail
    assert isinstance(raised.value.__cause__, OSError)


class _Silent(TCPTransport):
    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


async def test_a_connection_that_takes_too_long_is_connect_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(ConnectFailed) as raised:
        await connect(_Silent(), "127.0.0.1", 1, 3.0)
    assert raised.value.reason == raised.value.detail == "timed out"
    assert trio.current_time() == pytest.approx(3.0)


class _Raising(TCPTransport):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        raise self.error


@pytest.mark.parametrize(
    "error",
    [UnicodeError("label too long"), ValueError("embedded null character")],
    ids=["unicode", "value"],
)
async def test_host_text_no_resolver_takes_is_connect_failed(error: Exception) -> None:
    with pytest.raises(ConnectFailed) as raised:
        await connect(_Raising(error), "some host", 1, 5.0)
    assert raised.value.reason == str(error)
    assert raised.value.__cause__ is error


async def test_a_label_too_long_for_a_host_name() -> None:
    # trio refuses it before any resolver sees it (idna): nothing leaves the host.
    with pytest.raises(ConnectFailed):
        await connect(TCPTransport(), "a" * 300, 1, 5.0)


async def test_the_virtual_network_maps_the_same(autojump_clock: trio.testing.MockClock) -> None:
    async with VirtualNetwork() as net, net.open_pycos() as a:
        transport = a._peers.transport if a._peers is not None else None
        assert transport is not None
        with pytest.raises(ConnectFailed) as raised:
            await connect(transport, "10.9.9.9", 1, 5.0)  # nobody there
        assert raised.value.reason == "no route to host"
        with pytest.raises(ListenFailed) as in_use:
            await listen(transport, a.location.addr, a.location.port)
        assert in_use.value.reason == "address already in use"


# -- listening and accepting ----------------------------------------------------------


async def test_an_address_in_use_is_listen_failed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ListenFailed) as raised:
            await listen(TCPTransport(), "127.0.0.1", taken.getsockname()[1])
    assert raised.value.reason == "address already in use"
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.EADDRINUSE


class _Failing(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        raise self.error

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("code", "mapped"),
    [
        (errno.EMFILE, OutOfCapacity),
        (errno.ENFILE, OutOfCapacity),
        (errno.ENOMEM, OutOfCapacity),
        (errno.ENOBUFS, OutOfCapacity),
        (errno.EBADF, AcceptFailed),
        (errno.EINVAL, AcceptFailed),
        (None, AcceptFailed),
    ],
)
async def test_accept_failures_are_capacity_or_not(
    code: int | None, mapped: type[TransportError]
) -> None:
    error = OSError(code, os.strerror(code)) if code is not None else OSError("odd")
    with pytest.raises(mapped) as raised:
        await accept(_Failing(error))
    assert raised.value.__cause__ is error
    assert raised.value.reason == os_error_reason(error)


async def test_a_closed_listener_raises_trio_s_closed_error() -> None:
    with pytest.raises(trio.ClosedResourceError):
        await accept(_Failing(trio.ClosedResourceError()))


# -- datagram sockets -----------------------------------------------------------------


class _Refusing:
    """A DatagramSocket that refuses everything."""

    async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        await trio.lowlevel.checkpoint()
        raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))

    async def recvfrom(self, bufsize: int) -> tuple[bytes, tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        raise trio.ClosedResourceError("closed")

    def join_group(self, group: str, interface: str | None = None) -> None:
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))

    def enable_broadcast(self) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 9)

    def close(self) -> None:
        pass


async def test_datagram_socket_failures_are_datagram_failed() -> None:
    refusing: DatagramSocket = _Refusing()
    sock = MappedDatagramSocket(refusing)
    with pytest.raises(DatagramFailed, match=r"^network is unreachable$"):
        await sock.sendto(b"x", ("127.0.0.1", 9))
    with pytest.raises(DatagramFailed, match=r"^cannot assign requested address$"):
        sock.join_group("239.255.97.5", "127.0.0.1")
    with pytest.raises(DatagramFailed, match=r"^operation not permitted$"):
        sock.enable_broadcast()
    # A socket closed under a waiting receive stays trio's closed error.
    with pytest.raises(trio.ClosedResourceError):
        await sock.recvfrom(10)
    assert sock.getsockname() == ("127.0.0.1", 9)


async def test_a_port_taken_by_a_socket_that_does_not_share_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))  # no SO_REUSEADDR/SO_REUSEPORT
        with pytest.raises(DatagramFailed) as raised:
            await open_datagram_socket(TCPTransport(), "127.0.0.1", taken.getsockname()[1])
    assert raised.value.reason == "address already in use"


async def test_a_working_datagram_socket_works_through_the_mapping() -> None:
    transport: Transport = TCPTransport()
    a = await open_datagram_socket(transport, "127.0.0.1", 0)
    b = await open_datagram_socket(transport, "127.0.0.1", 0)
    try:
        await a.sendto(b"hello", b.getsockname())
        with trio.fail_after(5):
            data, sender = await b.recvfrom(100)
        assert (data, sender) == (b"hello", a.getsockname())
    finally:
        a.close()
        b.close()


# -- a socket read from a worker thread ------------------------------------------------


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
    finally:
        for listener in listeners:
            await listener.aclose()
    return client, server


async def test_thread_socket_only_for_plain_sockets() -> None:
    left, _ = trio.testing.memory_stream_pair()
    assert thread_socket(left) is None
    client, server = await _tcp_pair()
    sock = thread_socket(server)
    assert sock is not None
    sock.close()
    await server.aclose()
    assert thread_socket(server) is None  # closed: no descriptor to share
    await client.aclose()


async def test_thread_socket_reads_times_out_and_maps_a_reset() -> None:
    client, server = await _tcp_pair()
    sock = thread_socket(server)
    assert sock is not None
    try:
        assert await trio.to_thread.run_sync(sock.recv, 100, 0.05) is None  # nothing yet
        await client.send_all(b"abc")
        with trio.fail_after(5):
            got = await trio.to_thread.run_sync(sock.recv, 100, 5.0)
        assert got == b"abc"
        # A reset connection (linger 0) is a broken stream, as on trio's side.
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await trio.to_thread.run_sync(sock.recv, 100, 5.0)
    finally:
        sock.release()
        sock.close()
        await server.aclose()
