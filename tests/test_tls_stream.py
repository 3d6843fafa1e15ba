"""``transport.tls_stream.TLSStream``: trio's stream contract, its fast paths, its failures.

* trio's own conformance check of a two-way stream (``check_two_way_stream``);
* over a real socket pair: the write that cannot wait takes all or nothing of a
  frame and says when the stream owes a flush (``OWED``), and bytes arrive in order
  however sends, flushes and reads interleave;
* any split of the records on the wire reads the same (property test);
* garbage, truncation, a stranger's certificate: ``BrokenResourceError`` with the
  TLS error as its cause, never an ``ssl.SSLError`` to the caller;
* a write or handshake cut short breaks the stream for good, and bytes produced by
  reading wait for a write under way (the findings of a review, each fixed here).
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from triopycos.transport import nowait_sender, remote_address
from triopycos.transport._nowait import OWED
from triopycos.transport.tls_stream import TLSStream

CA = trustme.CA()
LEAF = CA.issue_cert("127.0.0.1")


def context(server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    LEAF.configure_cert(ctx)
    CA.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False
    if server:
        ctx.num_tickets = 0  # as the node's (tls_contexts): nothing after the handshake
    return ctx


SERVER, CLIENT = context(True), context(False)
Pair = tuple[TLSStream, TLSStream]


def tls_pair(raw: tuple[trio.abc.Stream, trio.abc.Stream]) -> Pair:
    return TLSStream(raw[0], CLIENT, server_side=False), TLSStream(raw[1], SERVER, server_side=True)


async def handshaken(pair: Pair) -> Pair:
    async with trio.open_nursery() as nursery:
        for stream in pair:
            nursery.start_soon(stream.do_handshake)
    return pair


def socket_pair(sndbuf: int | None = None) -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    wrap = trio.socket.from_stdlib_socket
    return trio.SocketStream(wrap(a)), trio.SocketStream(wrap(b))


async def test_trio_stream_conformance() -> None:
    async def plain() -> Pair:
        return tls_pair(trio.testing.memory_stream_pair())

    async def clogged() -> Pair:
        # Handshaken first: a lockstep stream cannot carry a handshake that nobody
        # reads (trio tests its SSLStream so too).
        return await handshaken(tls_pair(trio.testing.lockstep_stream_pair()))

    with trio.fail_after(30):
        await trio.testing.check_two_way_stream(plain, clogged)


async def test_over_sockets_the_nowait_write_takes_all_or_nothing_and_the_bytes_keep_order() -> (
    None
):
    rng = random.Random(7)
    client, server = await handshaken(tls_pair(socket_pair(sndbuf=8192)))
    send = nowait_sender(client)
    assert send is not None
    sent = bytearray()
    outcomes = {"all": 0, "owed": 0, "none": 0}

    async def writer() -> None:
        # What a peer connection does: try at once; what is not taken (or a flush
        # owed) goes to send_all.
        for i in range(3000):
            frame = rng.randbytes(rng.choice((1, 10, 100, 1000, 20_000)))
            taken = send(frame)
            sent.extend(frame)
            if taken == len(frame):
                outcomes["all"] += 1
            elif taken == OWED:
                outcomes["owed"] += 1
                await client.send_all(b"")
            else:
                assert taken == 0
                outcomes["none"] += 1
                await client.send_all(frame)
            if i % 50 == 0:
                await trio.lowlevel.checkpoint()
        # Once everything is read, the close is said (close_notify): the reader sees
        # the end of the stream, not a truncation.  (Closing makes one attempt that
        # cannot wait: into a full socket, close_notify would be dropped.)
        expected.append(len(sent))
        if len(got) < len(sent):
            await caught_up.wait()
        await client.aclose()

    got = bytearray()
    expected: list[int] = []
    caught_up = trio.Event()

    async def reader() -> None:
        while chunk := await server.receive_some(rng.choice((1, 7, 4096, 65536))):
            got.extend(chunk)
            if expected and len(got) >= expected[0]:
                caught_up.set()
            if rng.random() < 0.05:
                await trio.sleep(0.001)  # let the writer fill the socket

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(writer)
    assert got == sent
    assert outcomes["all"] and outcomes["owed"], outcomes  # both paths were taken
    await server.aclose()


async def test_no_nowait_write_before_the_handshake_or_under_a_send_all() -> None:
    client, server = tls_pair(socket_pair())
    send = nowait_sender(client)
    assert send is not None
    assert send(b"too early") == 0  # nothing taken: the handshake has not run
    await handshaken((client, server))
    assert send(b"now") == 3
    with trio.fail_after(5):
        assert await server.receive_some(100) == b"now"
    # Over a memory stream there is no write that cannot wait: no fast path.
    assert nowait_sender(tls_pair(trio.testing.memory_stream_pair())[0]) is None
    await client.aclose()
    await server.aclose()


async def test_a_cancelled_receive_loses_nothing_and_a_small_read_gets_the_rest_later() -> None:
    client, server = await handshaken(tls_pair(socket_pair()))
    with trio.move_on_after(0.05):
        await server.receive_some(10)
    await client.send_all(b"0123456789abcdef")
    with trio.fail_after(5):
        assert await server.receive_some(10) == b"0123456789"
        assert await server.receive_some(10) == b"abcdef"
    await client.aclose()
    await server.aclose()


async def expect_broken(receive: Callable[[], Awaitable[object]]) -> trio.BrokenResourceError:
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as caught:
        await receive()
    return caught.value


async def test_an_end_without_close_notify_is_a_truncation() -> None:
    client, server = await handshaken(tls_pair(socket_pair()))
    await client.transport_stream.aclose()  # the TCP end, no close_notify
    error = await expect_broken(lambda: server.receive_some(100))
    assert "close_notify" in str(error)
    await server.aclose()


@pytest.mark.parametrize("when", ["handshake", "after"])
async def test_garbage_from_the_wire_breaks_the_stream_with_the_tls_error_as_cause(
    when: str,
) -> None:
    raw_client, raw_server = socket_pair()
    server = TLSStream(raw_server, SERVER, server_side=True)
    if when == "after":
        client = TLSStream(raw_client, CLIENT, server_side=False)
        await handshaken((client, server))
        await raw_client.send_all(b"\x17\x03\x03\x00\x20" + bytes(32))  # a forged record
    else:
        await raw_client.send_all(b"GET / HTTP/1.1\r\n\r\n" * 10)
    error = await expect_broken(lambda: server.receive_some(100))
    assert isinstance(error.__cause__, ssl.SSLError)
    # Broken once, broken for good: still no ssl.SSLError escapes.
    await expect_broken(lambda: server.receive_some(100))
    await server.aclose()
    await raw_client.aclose()


async def test_a_stranger_s_certificate_fails_both_handshakes() -> None:
    stranger_ca = trustme.CA()
    stranger = stranger_ca.issue_cert("127.0.0.1")
    stranger_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    stranger.configure_cert(stranger_client)
    stranger_client.check_hostname = False
    stranger_client.verify_mode = ssl.CERT_NONE  # it would talk to anyone
    raw_client, raw_server = socket_pair()
    client = TLSStream(raw_client, stranger_client, server_side=False)
    server = TLSStream(raw_server, SERVER, server_side=True)
    outcomes: list[BaseException] = []

    async def run(stream: TLSStream) -> None:
        try:
            await stream.do_handshake()
            await stream.receive_some(10)
        except trio.BrokenResourceError as exc:
            outcomes.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, client)
            nursery.start_soon(run, server)
    assert len(outcomes) == 2
    assert all(isinstance(exc.__cause__, ssl.SSLError) for exc in outcomes)
    await client.aclose()
    await server.aclose()


class Relay:
    """Carries the raw bytes between two TLS streams, cut where the test says."""

    def __init__(self, cuts: list[int]) -> None:
        self.cuts = cuts
        self.index = 0

    async def carry(self, source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
        # Each far end is the source of one carrier and the sink of the other: the
        # first to see the end closes it for both.
        with contextlib.suppress(trio.ClosedResourceError):
            while data := await source.receive_some(1 << 16):
                while data:
                    size = self.cuts[self.index % len(self.cuts)]
                    self.index += 1
                    await sink.send_all(data[:size])
                    data = data[size:]
                    await trio.lowlevel.checkpoint()  # let the reader see each piece alone
            await sink.aclose()


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=12),
    read_size=st.integers(1, 5000),
)
async def test_any_split_of_the_records_reads_the_same(
    cuts: list[int], messages: list[bytes], read_size: int
) -> None:
    client_raw, client_far = trio.testing.memory_stream_pair()
    server_far, server_raw = trio.testing.memory_stream_pair()
    client = TLSStream(client_raw, CLIENT, server_side=False)
    server = TLSStream(server_raw, SERVER, server_side=True)
    relay = Relay(cuts)
    got = bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.carry, client_far, server_far)
            nursery.start_soon(relay.carry, server_far, client_far)

            async def send() -> None:
                for message in messages:
                    await client.send_all(message)
                await client.aclose()

            nursery.start_soon(send)
            while chunk := await server.receive_some(read_size):
                assert len(chunk) <= read_size
                got.extend(chunk)
            nursery.cancel_scope.cancel()
    assert got == b"".join(messages)
    await server.aclose()


async def test_a_cancelled_send_all_breaks_the_stream_for_good() -> None:
    # Part of a record may have left: anything sent after it would be garbage to the
    # peer, so nothing is (trio's SSLStream does the same).
    client, server = await handshaken(tls_pair(socket_pair(sndbuf=4096)))
    with trio.move_on_after(0.1):
        await client.send_all(b"x" * 1_000_000)  # nobody reads: it waits, then is cancelled
    for data in (b"after", b""):
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="interrupted"):
            await client.send_all(data)
    assert client.send_nowait is not None
    with pytest.raises(trio.BrokenResourceError):
        client.send_nowait(b"after")
    await client.aclose()
    await server.aclose()


async def test_a_cancelled_handshake_breaks_the_stream_for_good() -> None:
    client, server = tls_pair(socket_pair())
    with trio.move_on_after(0.05):
        await client.do_handshake()  # the server never answers
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="interrupted"):
        await client.receive_some(10)
    await client.aclose()
    await server.aclose()


async def test_a_write_waiting_for_the_lock_fails_if_the_flush_before_it_was_cut() -> None:
    client, server = await handshaken(tls_pair(socket_pair(sndbuf=4096)))
    cut = trio.CancelScope()
    outcome: list[BaseException] = []

    async def first() -> None:
        with cut:
            await client.send_all(b"a" * 1_000_000)  # stuck: nobody reads

    async def second() -> None:
        # A second owner of the send side, waiting behind the first (what the reader
        # is when reading produced bytes to send).
        try:
            async with client._send_lock:
                await client._flush()
        except trio.BrokenResourceError as exc:
            outcome.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            cut.cancel()
    assert len(outcome) == 1 and "interrupted" in str(outcome[0])
    await client.aclose()
    await server.aclose()


async def test_bytes_produced_by_reading_wait_for_a_write_under_way() -> None:
    # A peer that makes us write (renegotiation attempts, key updates) without ever
    # reading: the reader stops reading until the write under way is done, so TCP
    # holds the peer back instead of our memory growing.  OpenSSL's side is faked:
    # every read "produces" 100 bytes to send, as an answer to the peer would.
    client, server = await handshaken(tls_pair(socket_pair(sndbuf=4096)))
    real_read = server._tls.read

    def read_that_answers(n: int, buffer: Any = None) -> bytes:
        data = real_read(n)
        server._outgoing.write(b"\x15" * 100)
        return data

    server._tls.read = read_that_answers  # type: ignore[method-assign, assignment]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"w" * 1_000_000)  # stuck: the client never reads
        await trio.testing.wait_all_tasks_blocked()
        reads = 0

        async def reader() -> None:
            nonlocal reads
            while await server.receive_some(100):
                reads += 1

        nursery.start_soon(reader)
        for i in range(2000):
            with trio.move_on_after(0.5) as stuck:
                await client.send_all(b"%d" % i)
            if stuck.cancelled_caught:
                break  # TCP holds the peer back: what the reader stopped reading fills up
        else:
            pytest.fail("a peer that never reads made the reader read 2000 records")
        await trio.testing.wait_all_tasks_blocked()
        assert reads <= 1
        assert server._outgoing.pending <= 200
        nursery.cancel_scope.cancel()
    await client.aclose()
    await server.aclose()


async def test_a_nowait_write_that_fails_breaks_the_stream() -> None:
    client, server = await handshaken(tls_pair(socket_pair()))
    await server.transport_stream.aclose()  # the far end goes away
    assert client.send_nowait is not None
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
        for _ in range(1000):  # the first writes may still be taken by the kernel
            client.send_nowait(b"x" * 1000)
            await trio.sleep(0.001)
    # The records of the failed write are gone: the stream says so from now on.
    with pytest.raises(trio.BrokenResourceError, match="write failed"):
        await client.send_all(b"more")
    await client.aclose()


async def test_whom_a_tls_stream_connects_to_is_its_transports_peer() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    raw = await trio.open_tcp_stream("127.0.0.1", port)
    accepted = await listener.accept()
    for wrapped in (
        TLSStream(raw, CLIENT, server_side=False),
        trio.SSLStream(raw, CLIENT, server_hostname=None),
    ):
        assert remote_address(wrapped) == ("127.0.0.1", port)
    await raw.aclose()
    await accepted.aclose()
    await listener.aclose()
