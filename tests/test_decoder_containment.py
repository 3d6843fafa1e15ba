"""A peer's bad input, or a failure while handling it, costs at most its own
connection or its own datagram: logged once, escaped, never the node.

Virtual network under the mock clock, except the file receiver (real loopback TCP,
as in tests/test_files.py).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing
from test_discovery import SECRET, all_peered, nodes
from test_files import LIMIT, raw_connection, refused, request, two_nodes

from triopycos import Task
from triopycos._remote import RemoteOps
from triopycos.protocol.auth import derive_key
from triopycos.protocol.discovery import MAX_DATAGRAM, Announcement, encode
from triopycos.protocol.files import FileReceiving, Refused, SendRequest, encode_end
from triopycos.protocol.messages import TaskSend
from triopycos.services.files import receiver as files_receiver
from triopycos.testing import VirtualNetwork

FORGED = "boom\nFORGED LOG LINE\x1b[31m"


def assert_escaped(records: list[logging.LogRecord]) -> None:
    for record in records:
        text = record.getMessage()
        assert "\n" not in text and "\x1b" not in text, text
        assert record.exc_info is None  # a formatted traceback would quote values raw
        assert len(text) < 1500


def _ping_that_fills_a_datagram() -> Announcement:
    """A ping "by host name" exactly MAX_DATAGRAM bytes long: its forward names the
    forwarding node's address instead of "h", and no longer fits one datagram."""
    hosts = (("x" * 255, 1),) * 4  # not addresses: nobody tries to connect there
    for length in range(255, 0, -1):
        ping = Announcement("ping", b"\x07" * 16, "n" * length, hosts, to="h", relay=False)
        if len(encode(ping, derive_key(SECRET))) <= MAX_DATAGRAM:
            return ping
    raise AssertionError("no ping fits")


async def test_a_datagram_that_breaks_the_service_is_dropped_not_the_node(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Finding: the forward of such a ping (replayed, or from a holder of the secret)
    # raised ValueError out of the receive loop, and the node stopped.
    ping = _ping_that_fills_a_datagram()
    datagram = encode(ping, derive_key(SECRET))
    assert len(datagram) > MAX_DATAGRAM - 8
    async with VirtualNetwork(seed=31) as net, nodes(net, ["a"]) as (a,):
        attacker = net.add_host("attacker").transport()
        sock = await attacker.open_udp("", 0)
        assert a._discovery is not None
        for _ in range(3):
            await sock.sendto(datagram, (a.location.addr, 9705))
        await trio.sleep(1)
        assert a._discovery.stats.dropped.get("broke the service") == 3
        broke = [r for r in caplog.records if "broke the service" in r.getMessage()]
        assert len(broke) == 1  # once, however often it is replayed
        assert_escaped(broke)
        async with nodes(net, ["b"]) as (b,):  # still discovering
            await all_peered([a, b])


async def test_a_message_that_breaks_the_dispatcher_closes_only_its_connection(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = RemoteOps.dispatch

    def dispatch(self: RemoteOps, conn: Any, events: Iterator[object]) -> None:
        def checked() -> Iterator[object]:
            for message in events:
                if isinstance(message, TaskSend) and message.message == "boom":
                    raise RuntimeError(FORGED)  # a bug quoting the peer's value
                yield message

        original(self, conn, checked())

    monkeypatch.setattr(RemoteOps, "dispatch", dispatch)
    async with VirtualNetwork(seed=32) as net:
        args: dict[str, Any] = {"secret": "s", "discover_peers": False}
        async with (
            net.open_pycos(name="a", **args) as a,
            net.open_pycos(name="b", **args) as b,
            net.open_pycos(name="c", **args) as c,
        ):
            got: list[object] = []

            async def sink(task: Task) -> None:
                task.set_daemon()
                task.register("sink")
                while True:
                    got.append(await task.receive())

            a.spawn(sink)

            async def send(task: Task, message: str) -> int:
                target = await Task.locate("sink", a.location, timeout=5)
                assert target is not None
                if message == "boom":
                    return target.send(message)
                return await target.deliver(message, timeout=2)

            assert await b.peer(a.location) == 0
            assert await c.peer(a.location) == 0
            assert await b.spawn(send, "boom").finish() == 0
            await trio.sleep(1)
            status = await a.status()
            assert status is not None and {p.name for p in status.peers} == {"c"}
            failed = [r for r in caplog.records if "closing connection" in r.getMessage()]
            assert len(failed) == 1
            assert_escaped(failed)
            assert "FORGED" in failed[0].getMessage()  # escaped, not hidden
            # The node and its other peer carry on; b may come back.
            assert await c.spawn(send, "fine").finish() == 1
            assert await b.peer(a.location) == 0
            assert await b.spawn(send, "back").finish() == 1
            assert got == ["fine", "back"]


async def test_a_file_request_is_logged_escaped_and_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Finding: the receiver's log line quoted the requested name and folder with repr,
    # whole: a 60 KB name made a 60 KB line (and a refusal reason as long).
    name = "../" + FORGED * 900
    with trio.fail_after(LIMIT):
        async with two_nodes(tmp_path) as (a, b), raw_connection(b, a.location) as raw:
            await raw.send(request(name, dir=FORGED * 900))
            reply = await raw.reply()
            assert isinstance(reply, Refused) and len(reply.reason) < 300
            await refused(a)
    lines = [r for r in caplog.records if "not carried out" in r.getMessage()]
    assert len(lines) == 1
    assert_escaped(lines)


class _Dribble(trio.abc.ReceiveStream):
    """Hands out its bytes one per receive, as a peer sending a byte per segment."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        byte, self.data = self.data[:1], self.data[1:]
        return byte

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_content_dribbled_a_byte_at_a_time_is_batched_in_bounded_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Finding: a batch was cut only by bytes (1 MiB), so a sender dribbling one byte
    # per segment made a batch of a million views (~200 MB) before the writer saw it.
    monkeypatch.setattr(files_receiver, "MAX_PIECES", 16)
    size = 2000
    proto = FileReceiving(1 << 20)
    proto.receive_data(request("f", size=size))
    assert isinstance(proto.next_event(), SendRequest)
    proto.go(size, None)
    stream = _Dribble(struct.pack(">I", size) + b"x" * size + encode_end())
    batches: list[list[memoryview]] = []
    with trio.CancelScope() as idle:
        reader = files_receiver.FileReceiver._read_content(
            cast(trio.abc.Stream, stream), proto, idle, 10.0
        )
        async for item in reader:
            if isinstance(item, list):
                batches.append(item)
    assert sum(len(piece) for batch in batches for piece in batch) == size
    assert max(len(batch) for batch in batches) <= 16


async def test_discovery_datagrams_are_keyed_with_the_derived_key_not_the_secret(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A MAC keyed with the raw secret would let anyone who hears one datagram test
    # candidate secrets at HMAC speed; keyed with derive_key(secret), each costs a
    # scrypt.  So the node must refuse a datagram MAC'd with the secret itself.
    async with VirtualNetwork(seed=33) as net, nodes(net, ["a"]) as (a,):
        attacker = net.add_host("attacker").transport()
        sock = await attacker.open_udp("", 0)
        assert a._discovery is not None
        stats = a._discovery.stats
        hello = Announcement("announce", b"\x09" * 16, "x", (("10.9.9.9", 1),))
        await sock.sendto(encode(hello, SECRET), (a.location.addr, 9705))
        await trio.sleep(1)
        assert stats.dropped == {"authentication failed (another secret, or forged)": 1}
        await sock.sendto(encode(hello, derive_key(SECRET)), (a.location.addr, 9705))
        await trio.sleep(1)
        assert a.statistics().datagrams_dropped == 1  # the keyed one was taken
