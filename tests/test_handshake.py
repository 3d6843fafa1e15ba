"""The sans-IO handshake: two machines wired back to back, and hostile peers."""

from __future__ import annotations

import secrets
from typing import Any

import cbor2
import pytest

from triopycos.protocol.auth import derive_key
from triopycos.protocol.framing import FrameDecoder, encode_frame
from triopycos.protocol.handshake import (
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Authenticated,
    Handshake,
    HandshakeFailed,
)


def machine(initiator: bool, secret: str = "s", **kwargs: object) -> Handshake:
    args: dict[str, object] = {
        "initiator": initiator,
        "key": derive_key(secret),
        "node_id": secrets.token_bytes(16),
        "name": "i" if initiator else "r",
        "locations": [("127.0.0.1", 9000 if initiator else 9001)],
    }
    return Handshake(**(args | kwargs))  # type: ignore[arg-type]


def run(a: Handshake, b: Handshake) -> tuple[object, object]:
    """Shuttle bytes between the two until both are done or one fails."""
    results: dict[int, object] = {}
    for _ in range(10):
        for index, (me, other) in enumerate(((a, b), (b, a))):
            data = me.data_to_send()
            if data and index ^ 1 not in results:
                other.receive_data(data)
        for index, me in enumerate((a, b)):
            if index in results:
                continue
            try:
                event = me.next_event()
            except HandshakeFailed as exc:
                results[index] = exc
            else:
                if event is not None:
                    results[index] = event
        if len(results) == 2:
            break
    return results.get(0), results.get(1)


def frames(data: bytes) -> list[Any]:
    decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
    decoder.receive_data(data)
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(cbor2.loads(frame))
    return out


def hello(**fields: object) -> bytes:
    """An initiator's hello frame, valid unless ``fields`` say otherwise."""
    message: dict[str, object] = {
        "triopycos": PROTOCOL_VERSION,
        "id": b"x" * 16,
        "name": "n",
        "locations": [["127.0.0.1", 9000]],
        "nonce": b"n" * 32,
        "purpose": "peer",
    }
    return encode_frame(cbor2.dumps(message | fields))


def test_same_secret_authenticates_both_sides() -> None:
    a, b = machine(True), machine(False)
    ra, rb = run(a, b)
    assert isinstance(ra, Authenticated) and isinstance(rb, Authenticated)
    assert ra.peer.name == "r" and ra.peer.locations == (("127.0.0.1", 9001),)
    assert rb.peer.name == "i" and rb.peer.purpose == "peer"
    assert ra.leftover == b"" and rb.leftover == b""


def test_wrong_secret_fails_on_both_sides() -> None:
    ra, rb = run(machine(True, "one"), machine(False, "two"))
    assert isinstance(ra, HandshakeFailed) and isinstance(rb, HandshakeFailed)
    assert "authentication failed" in str(rb)
    assert ra.by_peer and "authentication failed" in str(ra)


def test_the_responder_says_nothing_secret_derived_until_the_initiator_proved_itself() -> None:
    # A stranger that dials gets a challenge: a version and a nonce, nothing else.
    b = machine(False)
    (challenge,) = frames(b.data_to_send())
    assert set(challenge) == {"triopycos", "nonce"}
    b.receive_data(hello())  # a well-formed hello, and then no proof
    assert b.next_event() is None
    assert b.data_to_send() == b""
    # A wrong proof gets a refusal, still no proof and no name.
    b.receive_data(encode_frame(cbor2.dumps({"proof": b"p" * 32})))
    with pytest.raises(HandshakeFailed, match="authentication failed"):
        b.next_event()
    assert frames(b.data_to_send()) == [{"refuse": "authentication failed (wrong secret?)"}]


def test_the_responder_proves_itself_after_the_initiators_proof() -> None:
    a, b = machine(True), machine(False)
    a.receive_data(b.data_to_send())  # the challenge
    assert a.next_event() is None
    b.receive_data(a.data_to_send())  # a's hello and proof
    assert isinstance(b.next_event(), Authenticated)
    hello_r, proof_r = frames(b.data_to_send())
    assert set(hello_r) == {"id", "name", "locations"} and set(proof_r) == {"proof"}


def test_an_initiator_expecting_another_node_is_refused() -> None:
    responder_id = secrets.token_bytes(16)
    ra, rb = run(machine(True, expect=b"\x07" * 16), machine(False, node_id=responder_id))
    assert isinstance(rb, HandshakeFailed) and "not the node you expected" in rb.reason
    assert isinstance(ra, HandshakeFailed) and ra.by_peer
    # Expecting the right one authenticates as usual.
    ra, rb = run(machine(True, expect=responder_id), machine(False, node_id=responder_id))
    assert isinstance(ra, Authenticated) and isinstance(rb, Authenticated)
    assert rb.peer.expect == responder_id


def test_version_mismatch_is_refused_with_a_reason() -> None:
    ra, rb = run(machine(True, version=7), machine(False))
    assert isinstance(rb, HandshakeFailed) and "version 7" in rb.reason
    assert isinstance(ra, HandshakeFailed) and ra.by_peer and "version" in ra.reason
    ra, rb = run(machine(True), machine(False, version=7))
    assert isinstance(ra, HandshakeFailed) and "version 7" in ra.reason


def test_a_huge_version_is_refused_without_formatting_it() -> None:
    b = machine(False)
    b.receive_data(hello(triopycos=2**64 - 1))
    with pytest.raises(HandshakeFailed, match="an unknown version"):
        b.next_event()


def test_bytes_after_the_proof_are_handed_over() -> None:
    a, b = machine(True), machine(False)
    a.receive_data(b.data_to_send())
    assert a.next_event() is None
    # Were a to send application frames right behind its proof, b hands them over.
    b.receive_data(a.data_to_send() + encode_frame(b"app-frame"))
    event = b.next_event()
    assert isinstance(event, Authenticated) and event.leftover == encode_frame(b"app-frame")
    # b may send frames right behind its own proof.
    a.receive_data(b.data_to_send() + encode_frame(b"more"))
    event = a.next_event()
    assert isinstance(event, Authenticated) and event.leftover == encode_frame(b"more")


def test_a_reflected_first_frame_is_refused() -> None:
    a = machine(True)
    a.receive_data(a.data_to_send())  # an attacker echoes the hello back as a challenge
    with pytest.raises(HandshakeFailed, match="malformed challenge"):
        a.next_event()
    b = machine(False)
    b.receive_data(b.data_to_send())  # the challenge echoed back as a hello
    with pytest.raises(HandshakeFailed, match="malformed hello"):
        b.next_event()


def test_a_hello_with_our_own_id_is_refused() -> None:
    own = secrets.token_bytes(16)
    b = machine(False, node_id=own)
    b.receive_data(hello(id=own))
    with pytest.raises(HandshakeFailed, match="itself"):
        b.next_event()


def test_a_replayed_proof_does_not_authenticate() -> None:
    # Record a good run's initiator bytes, then replay them to a fresh responder.
    a, b = machine(True), machine(False)
    a.receive_data(b.data_to_send())
    a.next_event()
    recorded = a.data_to_send()
    b.receive_data(recorded)
    assert isinstance(b.next_event(), Authenticated)
    fresh = machine(False)
    fresh.receive_data(recorded)
    with pytest.raises(HandshakeFailed, match="authentication failed"):
        fresh.next_event()


def test_a_reflected_proof_does_not_authenticate() -> None:
    # The responder's own proof, sent back as the initiator's, fails: the labels differ.
    a, b = machine(True), machine(False)
    a.receive_data(b.data_to_send())
    a.next_event()
    b.receive_data(a.data_to_send())
    b.next_event()
    _, proof_r = frames(b.data_to_send())
    a2 = machine(True)
    b2 = machine(False)
    a2.receive_data(b2.data_to_send())
    a2.next_event()
    (hello_a2, _) = frames(a2.data_to_send())
    b2.receive_data(encode_frame(cbor2.dumps(hello_a2)) + encode_frame(cbor2.dumps(proof_r)))
    with pytest.raises(HandshakeFailed, match="authentication failed"):
        b2.next_event()


@pytest.mark.parametrize(
    "payload",
    [
        b"not cbor at all \xff",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"triopycos": PROTOCOL_VERSION, "id": "not bytes"}),
        hello(nonce=b"")[4:],
        hello(locations=[["h", 70000]])[4:],
        hello(name="")[4:],
        hello(name="x" * 256)[4:],
        hello(purpose="other")[4:],
        hello(extra=1)[4:],
        hello(expect=b"short")[4:],
        cbor2.dumps(cbor2.CBORTag(55799, {"triopycos": PROTOCOL_VERSION})),
        hello(name=cbor2.CBORTag(2, b"\x01" * 100))[4:],
        hello(triopycos=1 << 16000)[4:],
        hello(extra=[True])[4:],
        hello(extra=None)[4:],
        hello(extra=1.5)[4:],
        hello()[4:] + b"\x00",
        hello()[4:-1],
        b"\xbf\x61a\x01\xff",  # an indefinite-length map
        b"\xa1\x61a\x18\x01",  # a longer head than needed
        b"\xa2\x61a\x01\x61a\x02",  # a repeated key
        b"\xa1\x01\x02",  # a key that is not text
        b"\xa1\x62\xc3\x28\x01",  # invalid UTF-8
    ],
)
def test_malformed_hellos_are_refused(payload: bytes) -> None:
    b = machine(False)
    b.receive_data(encode_frame(payload))
    with pytest.raises(HandshakeFailed):
        b.next_event()
    b.data_to_send()  # its challenge and the refusal; then it stays failed
    with pytest.raises(HandshakeFailed):
        b.next_event()


def test_oversized_handshake_frame_is_refused_before_its_body() -> None:
    b = machine(False)
    b.receive_data((MAX_HANDSHAKE_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(HandshakeFailed, match="exceeds"):
        b.next_event()


def test_a_refusal_reason_is_escaped_and_cut() -> None:
    a = machine(True)
    a.receive_data(encode_frame(cbor2.dumps({"refuse": "no\nINFO forged line \x1b[31m" * 50})))
    with pytest.raises(HandshakeFailed) as failed:
        a.next_event()
    assert failed.value.by_peer
    assert "\n" not in str(failed.value) and "\x1b" not in str(failed.value)
    assert "\\n" in failed.value.reason and len(failed.value.reason) < 300


def test_a_refusal_with_anything_but_text_is_malformed() -> None:
    a = machine(True)
    a.receive_data(encode_frame(cbor2.dumps({"refuse": 1 << 16000})))
    with pytest.raises(HandshakeFailed, match="malformed") as failed:
        a.next_event()
    assert not failed.value.by_peer
