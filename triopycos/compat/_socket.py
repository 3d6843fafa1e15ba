"""pycos's ``AsyncSocket`` on trio: a standard socket whose operations a task waits
for with ``yield`` (``data = yield sock.recv(1024)``) or ``await``.

``AsyncSocket(sock, blocking=False, keyfile=None, certfile=None, ssl_version=None)``
wraps any socket (TCP or UDP, IPv4 or IPv6).  Asynchronous (the default): ``recv``,
``recvall``, ``recv_msg``, ``recvfrom``, ``send``, ``sendall``, ``send_msg``,
``sendto``, ``accept`` and ``connect`` return awaitables that run in the task, on
trio's readiness waits (``trio.lowlevel.wait_readable``); every other attribute is the
socket's own (``bind``, ``listen``, ``getsockname``, ``setsockopt``, ``fileno``...).
With ``blocking=True`` the same names are plain blocking calls, for code outside tasks.

pycos's results, kept: ``recvall(n)`` gives a ``bytearray`` of ``n`` bytes, or ``b''``
if the connection ends first; ``recv_msg()`` reads a message ``send_msg`` framed with a
4-byte big-endian length (``b''`` on a short read); ``sendall`` gives None;
``connect`` gives 0; ``accept`` gives ``(AsyncSocket, address)``.  ``settimeout(t)``
bounds each operation: ``socket.timeout`` is raised, except that ``recvall`` and
``sendall`` give what they got that far if they got anything (``recvall``'s clock
restarts at each chunk received, as pycos's).

TLS: with ``certfile`` (and ``keyfile``), ``accept`` hands back connections whose
server-side handshake is done (``ssl.create_default_context(Purpose.CLIENT_AUTH)``
with that certificate, kept as ``ssl_server_ctx``; set it to use your own context),
and ``connect`` makes a client connection that trusts ``certfile`` as its CA (no host
name check, as pycos); ``ssl_version`` picks the protocol (default: the best both
sides have).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import math
import socket
import ssl
import struct
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import trio

from ._fdwait import Watched, wait_fd

__all__ = ["AsyncSocket"]

T = TypeVar("T")
_LENGTH = struct.Struct(">L")
_IN_PROGRESS = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN)


class _TimedOut(Exception):
    """An operation's own deadline (not the task's cancellation) passed."""


class AsyncSocket:
    _default_timeout: ClassVar[float | None] = None
    _MsgLengthSize: ClassVar[int] = _LENGTH.size
    _ssl_protocol: ClassVar[ssl._SSLMethod] = ssl.PROTOCOL_TLS

    _rsock: socket.socket

    def __init__(
        self,
        sock: socket.socket | AsyncSocket,
        blocking: bool = False,
        keyfile: str | None = None,
        certfile: str | None = None,
        ssl_version: ssl._SSLMethod | None = None,
    ) -> None:
        if isinstance(sock, AsyncSocket):  # pycos: a copy sharing the same socket
            self.__dict__.update(sock.__dict__)
            return
        self._rsock = sock
        self._keyfile = keyfile
        self._certfile = certfile
        self._ssl_version = ssl_version or AsyncSocket._ssl_protocol
        self._fileno = sock.fileno()
        self._timeout: float | None = 0
        self._blocking: bool | None = None
        self._watched = Watched()
        self.ssl_server_ctx: ssl.SSLContext | None = None
        self.setblocking(blocking)
        if AsyncSocket._default_timeout:
            self.settimeout(AsyncSocket._default_timeout)

    def __getattr__(self, name: str) -> Any:
        if name == "_rsock":  # (closed, or not yet set up)
            raise AttributeError(name)
        return getattr(self._rsock, name)

    def __repr__(self) -> str:
        mode = "blocking" if self._blocking else "asynchronous"
        return f"<AsyncSocket fd={self._fileno} {mode}>"

    def __lt__(self, other: object) -> bool:
        if isinstance(other, AsyncSocket):
            return self._fileno < other._fileno
        return True

    def __enter__(self) -> AsyncSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- modes and settings ---------------------------------------------------------

    def setblocking(self, blocking: bool) -> None:
        blocking = bool(blocking)
        if self._blocking == blocking:
            return
        self._blocking = blocking
        # The socket itself is always non-blocking in the asynchronous mode: trio
        # waits for readiness, then the call is made.
        self._rsock.setblocking(blocking)

    def settimeout(self, timeout: float | None) -> None:
        if self._blocking:
            if timeout is None:
                return
            if not timeout:
                self.setblocking(False)
                self._timeout = 0
            else:
                self._rsock.settimeout(timeout)
        else:
            self._timeout = timeout

    def gettimeout(self) -> float | None:
        if self._blocking:
            return self._rsock.gettimeout()
        return self._timeout

    def setdefaulttimeout(self, timeout: float) -> None:
        """Every AsyncSocket made from now on gets this timeout (seconds > 0)."""
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            AsyncSocket._default_timeout = timeout

    def getdefaulttimeout(self) -> float | None:
        if self._blocking:
            return socket.getdefaulttimeout()
        return AsyncSocket._default_timeout

    @classmethod
    def get_ssl_version(cls) -> ssl._SSLMethod:
        return AsyncSocket._ssl_protocol

    @classmethod
    def set_ssl_version(cls, version: ssl._SSLMethod) -> None:
        AsyncSocket._ssl_protocol = version

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (from any thread).  A task waiting on it stays waiting,
        as in pycos."""
        rsock = self.__dict__.pop("_rsock", None)
        if rsock is None:
            return
        if isinstance(rsock, ssl.SSLSocket):
            # A polite TLS close, when it can be done without waiting.
            with contextlib.suppress(OSError, ValueError):
                rsock = rsock.unwrap()
        self._watched.close(self._fileno, rsock.close)

    def unwrap(self) -> socket.socket:
        """The socket itself, no longer managed by this object."""
        rsock: socket.socket = self.__dict__.pop("_rsock")
        return rsock

    # -- the operations: blocking calls, or awaitables ------------------------------

    def recv(self, bufsize: int, *flags: int) -> Any:
        if self._blocking:
            return self._rsock.recv(bufsize, *flags)
        return self._op(lambda: self._rsock.recv(bufsize, *flags), readable=True)

    def recvfrom(self, bufsize: int, *flags: int) -> Any:
        if self._blocking:
            return self._rsock.recvfrom(bufsize, *flags)
        return self._op(lambda: self._rsock.recvfrom(bufsize, *flags), readable=True)

    def send(self, data: bytes, *flags: int) -> Any:
        if self._blocking:
            return self._rsock.send(data, *flags)
        return self._op(lambda: self._rsock.send(data, *flags), readable=False)

    def sendto(self, data: bytes, *args: Any) -> Any:
        if self._blocking:
            return self._rsock.sendto(data, *args)
        return self._op(lambda: self._rsock.sendto(data, *args), readable=False)

    def recvall(self, bufsize: int, *flags: int) -> Any:
        """Exactly ``bufsize`` bytes (a bytearray), or ``b''`` if the peer closes first."""
        if self._blocking:
            return self._sync_recvall(bufsize, *flags)
        return self._async_recvall(bufsize, *flags)

    def sendall(self, data: bytes, *flags: int) -> Any:
        if self._blocking:
            return self._rsock.sendall(data, *flags)
        return self._async_sendall(data, *flags)

    def recv_msg(self) -> Any:
        """One message sent with ``send_msg``; ``b''`` if the connection ended."""
        if self._blocking:
            return self._sync_recv_msg()
        return self._async_recv_msg()

    def send_msg(self, data: bytes) -> Any:
        """Send ``data`` framed with its length, for the peer's ``recv_msg``."""
        return self.sendall(_LENGTH.pack(len(data)) + data)

    def accept(self) -> Any:
        if self._blocking:
            return self._sync_accept()
        return self._async_accept()

    def connect(self, address: Any) -> Any:
        if self._blocking:
            self._rsock.connect(address)
            if self._certfile:
                self._rsock = self._client_context().wrap_socket(self._rsock)
            return None
        return self._async_connect(address)

    async def create_connection(
        self,
        host_port: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> int:
        if timeout is not None:
            self.settimeout(timeout)
        if source_address is not None:
            self._rsock.bind(source_address)
        result: int = await self._async_connect(host_port)
        return result

    # -- asynchronous internals -----------------------------------------------------

    def _deadline(self) -> float:
        return trio.current_time() + self._timeout if self._timeout else math.inf

    async def _ready(self, readable: bool, deadline: float) -> None:
        self._watched.note()
        with trio.move_on_at(deadline) as scope:
            await wait_fd(self._rsock, readable=readable)
        if scope.cancelled_caught:
            raise _TimedOut

    async def _attempt(self, call: Callable[[], T], readable: bool, deadline: float) -> T:
        """``call()`` until it does not need to wait; a TLS socket may need to read
        in order to write and the other way round."""
        while True:
            try:
                return call()
            except (BlockingIOError, InterruptedError):
                wait_readable = readable
            except ssl.SSLWantReadError:
                wait_readable = True
            except ssl.SSLWantWriteError:
                wait_readable = False
            await self._ready(wait_readable, deadline)

    async def _op(self, call: Callable[[], T], *, readable: bool) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            result = await self._attempt(call, readable, self._deadline())
        except _TimedOut:
            raise TimeoutError("timed out") from None
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    async def _async_recvall(self, bufsize: int, *flags: int) -> bytearray | bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        buffer = bytearray(bufsize)
        view = memoryview(buffer)
        got = 0
        try:
            while got < bufsize:
                # The timeout bounds the wait for each chunk (pycos restarts it).
                n = await self._attempt(
                    functools.partial(self._rsock.recv_into, view[got:], bufsize - got, *flags),
                    True,
                    self._deadline(),
                )
                if not n:
                    return b""
                got += n
        except _TimedOut:
            if got:
                return bytes(buffer[:got])
            raise TimeoutError("timed out") from None
        finally:
            view.release()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return buffer

    async def _async_sendall(self, data: bytes, *flags: int) -> int | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        deadline = self._deadline()  # one for the whole (pycos does not restart it)
        with memoryview(data) as view:
            sent = 0
            try:
                while sent < len(view):
                    sent += await self._attempt(
                        functools.partial(self._rsock.send, view[sent:], *flags), False, deadline
                    )
            except _TimedOut:
                if sent:
                    return sent
                raise TimeoutError("timed out") from None
        await trio.lowlevel.cancel_shielded_checkpoint()
        return None

    async def _async_recv_msg(self) -> bytes | bytearray:
        header = await self._async_recvall(_LENGTH.size)
        if len(header) != _LENGTH.size:
            return b""
        (size,) = _LENGTH.unpack(header)
        if not size:
            return b""
        data = await self._async_recvall(size)
        return data if len(data) == size else b""

    async def _async_accept(self) -> tuple[AsyncSocket, Any]:
        conn, address = await self._op(self._rsock.accept, readable=True)
        if not self._certfile:
            return AsyncSocket(conn), address
        tls: socket.socket = conn
        try:
            if self.ssl_server_ctx is None:
                self.ssl_server_ctx = self._server_context()
            conn.setblocking(False)
            tls = self.ssl_server_ctx.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
            result = self._with_settings(tls)
            await result._handshake()
        except BaseException:
            tls.close()  # (the wrapped socket owns the connection once made)
            raise
        return result, address

    async def _async_connect(self, address: Any) -> int:
        address = await _resolved(self._rsock, address)
        await trio.lowlevel.checkpoint_if_cancelled()
        deadline = self._deadline()
        err = self._rsock.connect_ex(address)
        if err in _IN_PROGRESS:
            try:
                await self._ready(False, deadline)
            except _TimedOut:
                raise TimeoutError("timed out") from None
            err = self._rsock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {address!r}: {errno.errorcode.get(err, err)}")
        if self._certfile:
            self._rsock = self._client_context().wrap_socket(
                self._rsock, do_handshake_on_connect=False
            )
            await self._handshake()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return 0

    async def _handshake(self) -> None:
        rsock = self._rsock
        assert isinstance(rsock, ssl.SSLSocket)
        try:
            await self._attempt(rsock.do_handshake, True, self._deadline())
        except _TimedOut:
            raise TimeoutError("timed out") from None

    def _with_settings(self, sock: socket.socket) -> AsyncSocket:
        """A new asynchronous AsyncSocket for ``sock`` with this one's TLS settings."""
        return AsyncSocket(
            sock, keyfile=self._keyfile, certfile=self._certfile, ssl_version=self._ssl_version
        )

    # -- TLS contexts -----------------------------------------------------------------

    def _protocol(self, default: ssl._SSLMethod) -> ssl._SSLMethod:
        # PROTOCOL_TLS ("the best both sides have") is the default; its role-specific
        # forms say the same without the deprecation.
        return default if self._ssl_version == ssl.PROTOCOL_TLS else self._ssl_version

    def _server_context(self) -> ssl.SSLContext:
        assert self._certfile is not None
        if self._ssl_version == ssl.PROTOCOL_TLS:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        else:
            context = ssl.SSLContext(self._ssl_version)
        context.load_cert_chain(certfile=self._certfile, keyfile=self._keyfile)
        return context

    def _client_context(self) -> ssl.SSLContext:
        assert self._certfile is not None
        context = ssl.SSLContext(self._protocol(ssl.PROTOCOL_TLS_CLIENT))
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=self._certfile)
        return context

    # -- blocking internals ---------------------------------------------------------

    def _sync_recvall(self, bufsize: int, *flags: int) -> bytearray | bytes:
        buffer = bytearray(bufsize)
        with memoryview(buffer) as view:
            got = 0
            while got < bufsize:
                n = self._rsock.recv_into(view[got:], bufsize - got, *flags)
                if not n:
                    return b""
                got += n
        return buffer

    def _sync_recv_msg(self) -> bytes | bytearray:
        header = self._sync_recvall(_LENGTH.size)
        if len(header) != _LENGTH.size:
            return b""
        (size,) = _LENGTH.unpack(header)
        if not size:
            return b""
        data = self._sync_recvall(size)
        return data if len(data) == size else b""

    def _sync_accept(self) -> tuple[AsyncSocket, Any]:
        conn, address = self._rsock.accept()
        if self._certfile:
            if self.ssl_server_ctx is None:
                self.ssl_server_ctx = self._server_context()
            conn = self.ssl_server_ctx.wrap_socket(conn, server_side=True)
        wrapped = AsyncSocket(
            conn,
            blocking=True,
            keyfile=self._keyfile,
            certfile=self._certfile,
            ssl_version=self._ssl_version,
        )
        return wrapped, address


async def _resolved(sock: socket.socket, address: Any) -> Any:
    """``address`` with a host name looked up in a worker thread (a blocking lookup
    would stop every task); numeric addresses, ``''`` and other families as given."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return address
    host = address[0]
    if not isinstance(host, str) or not host or host == "<broadcast>":
        return address
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return address
    except ValueError:
        pass
    infos = await trio.socket.getaddrinfo(host, address[1], sock.family, sock.type)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    return infos[0][4]
