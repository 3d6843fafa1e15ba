"""pycos's AsyncSocket and asyncfile on trio (triopycos.compat), used as pycos
programs use them: from generator tasks, ``data = yield sock.recv(n)``.  Loopback only
(127.0.0.1 and ::1)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from triopycos import Pycos, Task, open_pycos
from triopycos.compat import AsyncSocket
from triopycos.compat.asyncfile import AsyncFile, AsyncPipe

LIMIT = 10
Body = Generator[Any, Any, Any]


@asynccontextmanager
async def node() -> AsyncIterator[Pycos]:
    with trio.fail_after(LIMIT):
        async with open_pycos(node="127.0.0.1", tcp_port=0, discover_peers=False) as pycos:
            yield pycos


async def run(fn: Callable[..., Body], *args: Any) -> Any:
    """``fn(*args)`` as a generator task; its result (its exception re-raised)."""
    task = Task(fn, *args)
    result = await task.finish()
    if task._exit is not None and task._exit[0] is not StopIteration:
        raise AssertionError(f"task failed: {task._exit[1]}")
    return result


def listening(family: int = socket.AF_INET, **kwargs: Any) -> AsyncSocket:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    sock = AsyncSocket(socket.socket(family, socket.SOCK_STREAM), **kwargs)
    sock.bind((host, 0))
    sock.listen(5)
    return sock


# -- AsyncSocket --------------------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
async def test_tcp_messages_and_exact_reads(family: int) -> None:
    server = listening(family)

    def serve(task: Task) -> Body:
        conn, address = yield server.accept()
        assert isinstance(conn, AsyncSocket) and address[0] in ("127.0.0.1", "::1")
        message = yield conn.recv_msg()
        yield conn.send_msg(bytes(message).upper())
        block = yield conn.recvall(100_000)
        sent = yield conn.sendall(bytes(block[::-1]))
        conn.close()
        return type(message).__name__, len(block), sent

    def client(task: Task) -> Body:
        sock = AsyncSocket(socket.socket(family, socket.SOCK_STREAM))
        assert (yield sock.connect(server.getsockname())) == 0
        yield sock.send_msg(b"hello")
        reply = yield sock.recv_msg()
        data = os.urandom(100_000)
        yield sock.sendall(data)
        back = yield sock.recvall(len(data))
        end = yield sock.recv(10)  # the server closed: end of stream
        sock.close()
        return reply, back == data[::-1], end

    async with node():
        serving = Task(serve)
        assert await run(client) == (b"HELLO", True, b"")
        # pycos's recvall gives a bytearray; sendall gives None.
        assert await serving.finish() == ("bytearray", 100_000, None)
    server.close()


async def test_recvall_and_recv_msg_give_empty_bytes_when_the_peer_closes_early() -> None:
    server = listening()

    def serve(task: Task) -> Body:
        conn, _ = yield server.accept()
        first = yield conn.recvall(10)  # only 3 bytes come, then the end
        conn2, _ = yield server.accept()
        second = yield conn2.recv_msg()  # a length saying 100, then the end
        conn.close()
        conn2.close()
        return first, second

    async with node():
        serving = Task(serve)
        for data in (b"abc", b"\x00\x00\x00\x64abc"):
            with socket.create_connection(server.getsockname()) as plain:
                plain.sendall(data)
        assert await serving.finish() == (b"", b"")
    server.close()


async def test_timeouts_raise_or_give_what_arrived() -> None:
    server = listening()
    plain = socket.socket()

    def serve(task: Task) -> Body:
        conn, _ = yield server.accept()
        conn.settimeout(0.05)
        assert conn.gettimeout() == 0.05
        try:
            yield conn.recv(10)
        except TimeoutError as exc:  # (socket.timeout)
            nothing = str(exc)
        plain.sendall(b"4321")
        partial = yield conn.recvall(10)  # 4 bytes come, then nothing
        conn.close()
        return nothing, partial

    async with node():
        plain.connect(server.getsockname())
        assert await run(serve) == ("timed out", b"4321")
    plain.close()
    server.close()


async def test_connect_refused() -> None:
    server = listening()
    port = server.getsockname()[1]
    server.close()  # nothing listens there now

    def connect(task: Task) -> Body:
        sock = AsyncSocket(socket.socket())
        try:
            yield sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return "refused"
        finally:
            sock.close()

    async with node():
        assert await run(connect) == "refused"


async def test_create_connection_and_the_default_timeout() -> None:
    server = listening()

    def connect(task: Task) -> Body:
        sock = AsyncSocket(socket.socket())
        result = yield sock.create_connection(server.getsockname(), timeout=5)
        timeout = sock.gettimeout()
        sock.close()
        conn, _ = yield server.accept()
        conn.close()
        return result, timeout

    async with node():
        assert await run(connect) == (0, 5)
    try:
        server.setdefaulttimeout(2.5)  # pycos's: for every AsyncSocket made after
        made = AsyncSocket(socket.socket())
        assert made.gettimeout() == made.getdefaulttimeout() == 2.5
        made.close()
    finally:
        AsyncSocket._default_timeout = None
    server.close()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
async def test_udp_sendto_and_recvfrom(family: int) -> None:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    receiver = AsyncSocket(socket.socket(family, socket.SOCK_DGRAM))
    receiver.bind((host, 0))

    def receive(task: Task) -> Body:
        got = []
        for _ in range(3):
            data, address = yield receiver.recvfrom(100)
            got.append((data, address[0]))
        return sorted(got)

    def send(n: int, task: Task) -> Body:
        sock = AsyncSocket(socket.socket(family, socket.SOCK_DGRAM))
        sent = yield sock.sendto(b"datagram %d" % n, receiver.getsockname())
        sock.close()
        return sent

    async with node():
        receiving = Task(receive)
        assert [await run(send, n) for n in range(3)] == [10, 10, 10]
        assert await receiving.finish() == [(b"datagram %d" % n, host) for n in range(3)]
    receiver.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str, str]:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


async def test_tls_with_pycos_options(ca: trustme.CA, tmp_path: Path) -> None:
    certfile, keyfile, cafile = tls_files(ca, tmp_path)
    server = listening(certfile=certfile, keyfile=keyfile)

    def serve(task: Task) -> Body:
        for _ in range(2):
            try:
                conn, _ = yield server.accept()
            except ssl.SSLError:
                continue  # the untrusting client hung up in the handshake
            message = yield conn.recv_msg()
            yield conn.send_msg(message + b" over TLS")
            conn.close()
        return isinstance(server.ssl_server_ctx, ssl.SSLContext)

    def client(trusted: str, task: Task) -> Body:
        # As pycos: the client's certfile is what it trusts (a CA, or the server's).
        sock = AsyncSocket(socket.socket(), certfile=trusted)
        try:
            yield sock.connect(server.getsockname())
        except ssl.SSLCertVerificationError:
            sock.close()
            return "not trusted"
        yield sock.send_msg(b"hi")
        reply = yield sock.recv_msg()
        sock.close()
        return bytes(reply)

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with node():
        serving = Task(serve)
        assert await run(client, str(other)) == "not trusted"
        assert await run(client, cafile) == b"hi over TLS"
        assert await serving.finish() is True
    server.close()


async def test_blocking_mode_from_a_plain_thread() -> None:
    server = listening(blocking=True)

    def serve() -> tuple[bytes, Any]:
        conn, _ = server.accept()
        assert isinstance(conn, AsyncSocket) and conn.gettimeout() is None
        message = conn.recv_msg()
        conn.sendall(b"ok")
        exact = conn.recvall(5)
        conn.close()
        return message, exact

    def client() -> bytes:
        sock = AsyncSocket(socket.socket(), blocking=True)
        sock.connect(server.getsockname())
        sock.send_msg(b"blocking")
        reply: bytes = sock.recv(2)
        sock.sendall(b"12345")
        sock.close()
        return reply

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            results: dict[str, Any] = {}

            async def in_thread(name: str, fn: Callable[[], Any]) -> None:
                results[name] = await trio.to_thread.run_sync(fn)

            nursery.start_soon(in_thread, "server", serve)
            nursery.start_soon(in_thread, "client", client)
    assert results == {"server": (b"blocking", b"12345"), "client": b"ok"}
    server.close()


async def test_closing_from_another_thread_leaves_a_waiting_task_waiting() -> None:
    # pycos's rule: the waiting task is not woken (its scheduler forgets the socket).
    left, right = socket.socketpair()
    sock = AsyncSocket(left)

    def wait(task: Task) -> Body:
        yield sock.recv(10)
        return "woken"

    async with node():
        waiting = Task(wait)
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(sock.close)
        await trio.testing.wait_all_tasks_blocked()
        assert waiting.is_alive()
        waiting.terminate()
        assert await waiting.finish() is None
    right.close()


# -- asyncfile ------------------------------------------------------------------------


async def test_async_file_reads_writes_and_lines_on_a_pipe() -> None:
    r, w = os.pipe()
    reader, writer = AsyncFile(r), AsyncFile(w)

    def write(task: Task) -> Body:
        n = yield writer.write(b"ab")
        yield task.receive()
        yield writer.write(b"cdef", full=True)
        yield task.sleep(0)  # (the reader may wake with these first 4 of its 6)
        yield writer.write(b"ghi\njklmn\n", full=True)
        yield task.receive()
        yield writer.write(b"last", full=True)
        writer.close()
        return n

    def read(writing: Task, task: Task) -> Body:
        first = yield reader.read(4)  # what one read gives (at most 4)
        writing.send("go on")
        exact = yield reader.read(6, full=True)
        line = yield reader.readline()
        short = yield reader.readline(size=3)
        rest_of_line = yield reader.readline()
        try:
            yield reader.read(10, timeout=0.05)
        except OSError as exc:
            timed_out = str(exc)
        writing.send("go on")
        rest = yield reader.read()  # up to the end
        return first, exact, line, short, rest_of_line, timed_out, rest

    async with node():
        writing = Task(write)
        assert await run(read, writing) == (
            b"ab",
            b"cdefgh",
            b"i\n",
            b"jkl",
            b"mn\n",
            "timedout",
            b"last",
        )
        assert await writing.finish() == 2
    reader.close()


async def test_async_file_write_timeout_gives_what_was_written() -> None:
    r, w = os.pipe()
    writer = AsyncFile(w)

    def write(task: Task) -> Body:
        # Nobody reads: the pipe's buffer fills, and the timeout ends the wait.
        return (yield writer.write(b"x" * 10_000_000, full=True, timeout=0.1))

    async with node():
        written = await run(write)
    assert 0 < written < 10_000_000
    writer.close()
    os.close(r)


async def test_async_file_on_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\ntwo\nthree")

    def read(task: Task) -> Body:
        got = []
        with AsyncFile(open(path, "rb")) as file:
            for _ in range(4):
                got.append((yield file.readline()))
        return got

    async with node():
        assert await run(read) == [b"one\n", b"two\n", b"three", b""]


async def test_async_pipe_communicate_and_a_chain_of_processes() -> None:
    def communicate(task: Task) -> Body:
        cat = subprocess.Popen(
            ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = yield AsyncPipe(cat).communicate(b"x" * 200_000)
        return len(out), err, cat.returncode

    def early_exit(task: Task) -> Body:
        # head stops reading after 10 bytes: the rest of the input is not an error.
        head = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, err = yield AsyncPipe(head).communicate("y" * 10_000_000)
        return out, err, head.returncode

    def chain(task: Task) -> Body:
        pipes: Any = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        upper = subprocess.Popen(["tr", "a-z", "A-Z"], **pipes)
        count = subprocess.Popen(["wc", "-l"], stdin=upper.stdout, stdout=subprocess.PIPE)
        assert upper.stdout is not None
        upper.stdout.close()  # (wc has it)
        pipe = AsyncPipe(upper, count)
        for word in (b"alpha\n", b"beta\n", b"gamma\n"):
            yield pipe.write(word, full=True)
        assert pipe.stdin is not None and pipe.stdout is not None
        pipe.stdin.close()
        lines = yield pipe.readline()
        pipe.stdout.close()
        codes = []
        for process in (upper, count):
            codes.append((yield trio.to_thread.run_sync(process.wait)))
        return lines, codes

    async with node():
        assert await run(communicate) == (200_000, b"", 0)
        assert await run(early_exit) == (b"y" * 10, None, 0)
        assert await run(chain) == (b"3\n", [0, 0])


async def test_async_pipe_reads_errors_and_proxies_the_process() -> None:
    def body(task: Task) -> Body:
        proc = subprocess.Popen(
            ["sh", "-c", "echo out; echo err >&2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        pipe = AsyncPipe(proc)
        err = yield pipe.read_stderr()
        out = yield pipe.read()
        code = yield trio.to_thread.run_sync(pipe.wait)  # Popen's own, through the pipe
        assert pipe.stdout is not None and pipe.stderr is not None
        pipe.stdout.close()
        pipe.stderr.close()
        return out, err, code, pipe.poll()

    async with node():
        assert await run(body) == (b"out\n", b"err\n", 0, 0)
    with pytest.raises(ValueError, match=r"subprocess\.Popen"):
        AsyncPipe(object())  # type: ignore[arg-type]


def test_close_of_an_unwatched_socket_from_any_thread() -> None:
    sock = AsyncSocket(socket.socket())
    thread = threading.Thread(target=sock.close)
    thread.start()
    thread.join()
    with pytest.raises(AttributeError):
        sock.fileno()
