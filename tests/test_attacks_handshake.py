"""Issue 16's attacks on the handshake, over real TCP (and TLS) on 127.0.0.1, one test
per finding.  After each, the node under attack still has its established peer (no
Offline, ``deliver`` round trips under 2 s), lets a new peer in, and has kept no
memory for it.  bench/hostile.py measures the same attacks for docs/security.md.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio
import trustme
from nodes import loopback_node, wait_for

from triopycos import Limits, Location, PeerStatus, Pycos, Task
from triopycos.protocol.auth import derive_key
from triopycos.protocol.framing import FrameDecoder, encode_frame
from triopycos.protocol.handshake import (
    BUSY_REFUSAL,
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Handshake,
)

LIMIT = 30
BIGNUM = 1 << 16000  # cbor2 writes it as tag 2; str() of it raises ValueError


def hello(**fields: Any) -> dict[str, Any]:
    """A dialler's hello, well formed unless ``fields`` say otherwise."""
    message = {
        "triopycos": PROTOCOL_VERSION,
        "id": secrets.token_bytes(16),
        "name": "attacker",
        "locations": [["127.0.0.1", 1]],
        "nonce": secrets.token_bytes(32),
        "purpose": "peer",
    }
    return message | fields


def shared_graph(levels: int, width: int) -> bytes:
    """Tags 28/29: ``width**levels`` values when expanded, in a few hundred bytes."""
    item = b"\xd8\x1c\x81\x00"
    for level in range(1, levels + 1):
        ref = b"\xd8\x1d" + cbor2.dumps(levels - (level - 1))
        item = b"\xd8\x1c" + bytes([0x98, width]) + item + ref * (width - 1)
    return item


def with_version(raw_version: bytes) -> bytes:
    """A hello whose version field is the raw CBOR ``raw_version``."""
    fields = cbor2.dumps(hello())
    # The map head (one byte, a6) and the key "triopycos" come first in cbor2's order.
    key = cbor2.dumps("triopycos")
    assert fields[1 : 1 + len(key)] == key
    rest = fields[1 + len(key) + len(cbor2.dumps(PROTOCOL_VERSION)) :]
    return fields[:1] + key + raw_version + rest


async def read_frames(stream: trio.abc.Stream, bound: float = 10) -> list[Any]:
    """Every frame the node sends until it closes the connection (our own node's
    frames: plain cbor2 is fine here)."""
    data = b""
    with trio.fail_after(bound):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while chunk := await stream.receive_some(65536):
                data += chunk
    out = []
    while data:
        size = int.from_bytes(data[:4], "big")
        out.append(cbor2.loads(data[4 : 4 + size]))
        data = data[4 + size :]
    return out


async def send_and_read(location: Location, payload: bytes) -> list[Any]:
    stream = await trio.open_tcp_stream(location.addr, location.port)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(encode_frame(payload))
        return await read_frames(stream)


# -- the node under attack, and what must hold after each attack ---------------------


@dataclass
class Guarded:
    a: Pycos
    b: Pycos
    statuses: list[Any] = field(default_factory=list)


@contextlib.asynccontextmanager
async def guarded(**kwargs: Any) -> AsyncIterator[Guarded]:
    """Node a (attacked) with an established peer b, an echo task on a, and a watch
    of a's PeerStatus messages."""
    with trio.fail_after(LIMIT):
        async with loopback_node("a", **kwargs) as a, loopback_node("b", **kwargs) as b:
            state = Guarded(a, b)

            async def echo(task: Task) -> None:
                task.set_daemon()
                task.register("echo")
                while True:
                    await task.receive()

            async def watch(task: Task) -> None:
                task.set_daemon()
                while True:
                    state.statuses.append(await task.receive())

            a.spawn(echo)
            a.peer_status(a.spawn(watch))
            assert await b.peer(a.location) == 0
            yield state


async def still_serves(state: Guarded, **node_args: Any) -> None:
    a, b = state.a, state.b
    lost = [s for s in state.statuses if s.status == PeerStatus.Offline and s.name == "b"]
    assert lost == []

    async def client() -> list[int]:
        target = await Task.locate("echo", a.location, timeout=5)
        assert target is not None
        results = []
        for i in range(3):
            with trio.fail_after(2):  # the round trip bound
                results.append(await target.deliver(i, timeout=2))
        return results

    assert await b.spawn(client).finish() == [1, 1, 1]
    async with loopback_node("newcomer", **node_args) as newcomer:
        assert await newcomer.peer(a.location) == 0


@dataclass
class Cost:
    cpu: float  # seconds of this process's CPU
    peak: int  # bytes above the start, at the worst moment
    kept: int  # bytes still held after the attack


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The library's records go nowhere (pytest keeps every captured record, which
    would count as memory the node kept)."""
    logger = logging.getLogger("triopycos")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    saved, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.propagate = saved
        logger.removeHandler(handler)


async def cost_of(attack: Callable[[], Awaitable[None]], rounds: int) -> Cost:
    """What ``rounds`` more attacks cost, after one to warm up (first-use caches)."""
    await attack()
    gc.collect()
    tracemalloc.start()
    try:
        start_memory = tracemalloc.get_traced_memory()[0]
        start = time.process_time()
        for _ in range(rounds):
            await attack()
        cpu = time.process_time() - start
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Cost(cpu, peak - start_memory, now - start_memory)


def refusal(frames: list[Any]) -> str:
    assert frames and "refuse" in frames[-1], frames
    assert all("proof" not in f for f in frames)
    return str(frames[-1]["refuse"])


# -- 1. a big integer where the version or the purpose should be ---------------------


@pytest.mark.parametrize("field_name", ["triopycos", "purpose"])
async def test_a_bignum_hello_at_the_acceptor(field_name: str) -> None:
    async with guarded() as state:

        async def attack() -> None:
            frames = await send_and_read(
                state.a.location, cbor2.dumps(hello(**{field_name: BIGNUM}))
            )
            assert "CBOR tag" in refusal(frames)

        with quiet_logs():
            cost = await cost_of(attack, rounds=20)
        await still_serves(state)
        assert state.a.statistics().handshakes_failed >= 20
        assert cost.kept < 256 * 1024


async def fake_server(
    handler: Callable[[trio.abc.Stream], Awaitable[None]],
    nursery: trio.Nursery,
) -> Location:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]

    async def serve() -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                async with stream:
                    await handler(stream)

    nursery.start_soon(serve)
    return Location("127.0.0.1", port)


async def test_a_bignum_from_a_node_we_dial() -> None:
    # The node dials an attacker (a replayed announcement and a taken address do
    # it): the attacker's first frame carries a big integer.
    async def bignum_server(stream: trio.abc.Stream) -> None:
        await stream.send_all(encode_frame(cbor2.dumps({"triopycos": BIGNUM, "nonce": b"n" * 32})))
        await read_frames(stream)

    async with guarded() as state, trio.open_nursery() as nursery:
        where = await fake_server(bignum_server, nursery)
        for _ in range(5):
            assert await state.b.peer(where) == -1
        await still_serves(state)
        assert state.b.statistics().handshakes_failed >= 5
        nursery.cancel_scope.cancel()


# -- 1b. the same over TLS, from a client with a trusted certificate ------------------


def leaf(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


async def test_a_bignum_hello_from_a_tls_client_with_a_trusted_certificate(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    tls: dict[str, Any] = {"cafile": str(cafile)}
    a_cert, a_key = leaf(ca, tmp_path, "a")
    b_cert, b_key = leaf(ca, tmp_path, "b")
    mallory_cert, mallory_key = leaf(ca, tmp_path, "mallory")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(mallory_cert, mallory_key)
    context.load_verify_locations(str(cafile))
    context.check_hostname = False
    with trio.fail_after(LIMIT):
        async with (
            loopback_node("a", certfile=a_cert, keyfile=a_key, **tls) as a,
            loopback_node("b", certfile=b_cert, keyfile=b_key, **tls) as b,
        ):
            assert await b.peer(a.location) == 0
            for _ in range(5):
                raw = await trio.open_tcp_stream(a.location.addr, a.location.port)
                stream = trio.SSLStream(raw, context, server_hostname=None)
                async with stream:
                    await stream.send_all(encode_frame(cbor2.dumps(hello(triopycos=BIGNUM))))
                    assert "CBOR tag" in refusal(await read_frames(stream))
            assert a.statistics().handshakes_failed >= 5
            assert b.peers() == [a.location]

            async def client() -> int:
                target = await Task.locate("echo_tls", a.location, timeout=5)
                assert target is not None
                return await target.deliver("still here", timeout=2)

            async def echo(task: Task) -> Any:
                task.register("echo_tls")
                return await task.receive()

            a.spawn(echo)
            assert await b.spawn(client).finish() == 1


# -- 2. a shared-reference graph: bounded CPU and memory --------------------------------


async def test_a_shared_reference_graph_hello_costs_little() -> None:
    graph = shared_graph(4, 40)  # 2.5 million values expanded; 5 levels froze it 14 s
    assert len(graph) < 600
    async with guarded() as state:

        async def attack() -> None:
            assert "CBOR tag" in refusal(await send_and_read(state.a.location, with_version(graph)))

        with quiet_logs():
            cost = await cost_of(attack, rounds=10)
        await still_serves(state)
        # Ten attacks (each also costs this process the attacker's side).
        assert cost.cpu < 1.0
        assert cost.peak < 2 * 1024 * 1024
        assert cost.kept < 256 * 1024


# -- 3. tags are refused before authentication ----------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        cbor2.CBORTag(2, b"\xff" * 64),  # bignum
        cbor2.CBORTag(30, [1, 3]),  # fraction
        cbor2.CBORTag(35, "(a+)+$"),  # regular expression
        cbor2.CBORTag(36, "Content-Type: text/plain\n\nhi"),  # MIME
        cbor2.CBORTag(5, [-1, 3]),  # bigfloat
        cbor2.CBORTag(258, [1, 2]),  # set
        cbor2.CBORTag(55799, 1),  # self-describe
    ],
    ids=["bignum", "fraction", "regex", "mime", "bigfloat", "set", "self-describe"],
)
async def test_tags_are_refused_before_authentication(tagged: cbor2.CBORTag) -> None:
    async with guarded() as state:

        async def attack() -> None:
            # Otherwise a valid hello: the tag is in a field the old decoder ignored.
            frames = await send_and_read(state.a.location, cbor2.dumps(hello(extra=tagged)))
            assert "CBOR tag" in refusal(frames)

        with quiet_logs():
            cost = await cost_of(attack, rounds=5)
        await still_serves(state)
        assert cost.kept < 256 * 1024


# -- 4. no proof to a party that has not proven itself --------------------------------


async def test_the_acceptor_gives_no_proof_to_an_unproven_dialler() -> None:
    async with guarded(limits=Limits(handshake_timeout=1.0)) as state:
        location = state.a.location
        # A valid hello and then nothing: the node waits for our proof, says nothing
        # more than its challenge, and closes at the handshake deadline.
        stream = await trio.open_tcp_stream(location.addr, location.port)
        async with stream:
            await stream.send_all(encode_frame(cbor2.dumps(hello())))
            frames = await read_frames(stream)
        assert [set(f) for f in frames] == [{"triopycos", "nonce"}]
        # A wrong proof: a refusal, still no proof, no name, no id.
        stream = await trio.open_tcp_stream(location.addr, location.port)
        async with stream:
            wrong = encode_frame(cbor2.dumps({"proof": b"p" * 32}))
            await stream.send_all(encode_frame(cbor2.dumps(hello())) + wrong)
            frames = await read_frames(stream)
        assert [set(f) for f in frames] == [{"triopycos", "nonce"}, {"refuse"}]
        assert "authentication failed" in refusal(frames)
        await still_serves(state)


async def test_a_party_we_dial_gets_a_proof_keyed_with_scrypt() -> None:
    # What a party we dial learns: our hello, and, once it has sent a challenge, our
    # proof.  That proof is keyed with scrypt(secret), not the secret: each guess at
    # the secret from it costs a scrypt (docs/security.md), not a microsecond.
    challenge = cbor2.dumps({"triopycos": PROTOCOL_VERSION, "nonce": b"c" * 32})
    received: list[bytes] = []

    async def challenging_server(stream: trio.abc.Stream) -> None:
        await stream.send_all(encode_frame(challenge))
        decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
        with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
            while len(received) < 2 and (data := await stream.receive_some(4096)):
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not None:
                    received.append(frame)

    async with guarded(limits=Limits(handshake_timeout=1.0)) as state:
        async with trio.open_nursery() as nursery:
            where = await fake_server(challenging_server, nursery)
            assert await state.b.peer(where) == -1
            nursery.cancel_scope.cancel()
        hello_payload, proof_payload = received
        proof = cbor2.loads(proof_payload)["proof"]
        transcript = encode_frame(challenge) + encode_frame(hello_payload)
        signed = b"triopycos/2 initiator" + hashlib.sha256(transcript).digest()
        assert proof == hmac.new(derive_key("test-secret"), signed, hashlib.sha256).digest()
        assert proof != hmac.new(b"test-secret", signed, hashlib.sha256).digest()
        await still_serves(state)


# -- 5. a REFUSE reason (and a peer name) with newlines and terminal codes -------------

FORGED = "bad\nCRITICAL triopycos: forged line\x1b[31m\x1b[2J\r\u2028"


def one_line(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("triopycos")]
    for message in messages:
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in message), message
        assert "\u2028" not in message
    return messages


async def test_a_refusal_is_logged_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="triopycos")

    async def refusing_server(stream: trio.abc.Stream) -> None:
        await stream.send_all(encode_frame(cbor2.dumps({"refuse": FORGED})))

    async with guarded() as state:
        async with trio.open_nursery() as nursery:
            where = await fake_server(refusing_server, nursery)
            assert await state.b.peer(where) == -1  # the dialler logs the reason
            nursery.cancel_scope.cancel()
        # ... and the acceptor, for a refusal sent to it.
        frames = await send_and_read(state.a.location, cbor2.dumps({"refuse": FORGED}))
        assert frames[0].keys() == {"triopycos", "nonce"}
        messages = one_line(caplog)
        assert sum("forged line" in m for m in messages) == 2
        await still_serves(state)


async def test_peer_text_in_hellos_is_logged_escaped(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="triopycos")
    async with guarded(dest_path=str(tmp_path)) as state:
        # A peer (it knows the secret) with a hostile name: it comes and goes, a file
        # of it arrives; every line about it stays one line.
        async with loopback_node(FORGED[:200]) as evil:
            assert await evil.peer(state.a.location) == 0
            assert await evil.send_file(state.a.location, __file__, timeout=5) == 0
        await wait_for(lambda: state.a.peers() == [state.b.location])
        # A hostile address in a hello: refused (it would be shown wherever the peer is).
        failed = state.a.statistics().handshakes_failed
        stream = await trio.open_tcp_stream(state.a.location.addr, state.a.location.port)
        machine = Handshake(
            initiator=True,
            key=derive_key("test-secret"),
            node_id=secrets.token_bytes(16),
            name="mallory",
            locations=[("10.0.0.1" + FORGED, 9)],
        )
        async with stream:
            await stream.send_all(machine.data_to_send())
            frames = await read_frames(stream)
        assert "bad locations" in refusal(frames)
        assert state.a.statistics().handshakes_failed == failed + 1
        messages = one_line(caplog)
        assert any("forged line" in m for m in messages)
        await still_serves(state)


# -- 6. a slowloris flood cannot keep new peers (or files) out -------------------------


@dataclass
class Flood:
    """``size`` connections that never finish their handshake, each reopened as soon
    as the node drops it; at most ``budget`` connections in all."""

    location: Location
    size: int
    budget: int
    opened: int = 0
    failed: int = 0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(self.size):
                nursery.start_soon(self._attacker, index)

    async def _attacker(self, index: int) -> None:
        # Half say nothing; half start a frame and never finish it.
        opening = b"" if index % 2 else b"\x00\x00\x01"
        while self.opened < self.budget:
            self.opened += 1
            try:
                stream = await trio.open_tcp_stream(self.location.addr, self.location.port)
            except OSError:
                self.failed += 1
                await trio.lowlevel.checkpoint()
                continue
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    if opening:
                        await stream.send_all(opening)
                    while await stream.receive_some(4096):
                        pass


async def test_a_slowloris_flood_cannot_keep_a_new_peer_or_a_file_out(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(256 * 1024))
    dest = tmp_path / "dest"
    async with guarded(dest_path=str(dest)) as state:
        a = state.a
        flood = Flood(a.location, size=200, budget=50_000)
        gc.collect()
        tracemalloc.start()
        try:
            start_memory = tracemalloc.get_traced_memory()[0]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood.run)
                # Saturated: every slot taken, and the oldest being evicted.
                await wait_for(lambda: a.statistics().handshakes_refused_busy >= 400, LIMIT)
                # All from one address: that address's cap.
                assert a.statistics().handshakes_pending == Limits().max_handshakes_per_address
                async with loopback_node("newcomer") as newcomer:
                    start = trio.current_time()
                    assert await newcomer.peer(a.location) == 0
                    peered = trio.current_time() - start
                    start = trio.current_time()
                    assert await newcomer.send_file(a.location, payload, timeout=10) == 0
                    sent = trio.current_time() - start
                await still_serves(state)
                evicted = a.statistics().handshakes_refused_busy
                nursery.cancel_scope.cancel()
            await wait_for(lambda: a.statistics().handshakes_pending == 0)
            gc.collect()
            # What trio's deadline heap keeps of finished handshakes is bounded (it
            # prunes stale entries past 1000 and twice the live ones).
            kept = tracemalloc.get_traced_memory()[0] - start_memory
        finally:
            tracemalloc.stop()
        # The documented target is 1 s (bench/hostile.py measures it, attacker in
        # another process); here the attacker shares this process's one thread.
        assert peered < 5 and sent < 5, (peered, sent)
        assert (dest / "payload.bin").read_bytes() == payload.read_bytes()
        assert evicted > 400 and flood.opened < flood.budget
        assert kept < 1024 * 1024


async def test_a_dialler_closed_to_make_room_tries_again() -> None:
    # An evicted connection is told BUSY (tests/test_remote.py: the capped slots);
    # the dialler then dials again, so peer() succeeds through a flood's churn.
    attempts: list[int] = []

    async def busy_once(stream: trio.abc.Stream) -> None:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            await stream.send_all(BUSY_REFUSAL)
            return
        responder = Handshake(
            initiator=False,
            key=derive_key("test-secret"),
            node_id=secrets.token_bytes(16),
            name="busy-once",
            locations=[("127.0.0.1", 1)],
        )
        await stream.send_all(responder.data_to_send())
        while (event := responder.next_event()) is None:
            responder.receive_data(await stream.receive_some(4096))
        await stream.send_all(responder.data_to_send())
        assert event.peer.name == "b"
        await trio.sleep_forever()  # a peer now, until the test ends

    async with guarded() as state:
        async with trio.open_nursery() as nursery:
            where = await fake_server(busy_once, nursery)
            assert await state.b.peer(where) == 0
            assert attempts == [0, 1]
            nursery.cancel_scope.cancel()
        await still_serves(state)
