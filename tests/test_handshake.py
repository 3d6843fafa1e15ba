"""The sans-IO handshake: two machines wired back to back, and hostile peers."""

from __future__ import annotations

import secrets

import cbor2
import pytest

from triopycos.protocol.framing import encode_frame
from triopycos.protocol.handshake import (
    MAX_HANDSHAKE_FRAME,
    Authenticated,
    Handshake,
    HandshakeFailed,
)


def machine(initiator: bool, secret: str = "s", **kwargs: object) -> Handshake:
    args: dict[str, object] = {
        "initiator": initiator,
        "secret": secret,
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


def test_same_secret_authenticates_both_sides() -> None:
    a, b = machine(True), machine(False)
    ra, rb = run(a, b)
    assert isinstance(ra, Authenticated) and isinstance(rb, Authenticated)
    assert ra.peer.name == "r" and ra.peer.locations == (("127.0.0.1", 9001),)
    assert rb.peer.name == "i"
    assert ra.leftover == b"" and rb.leftover == b""


def test_wrong_secret_fails_on_both_sides() -> None:
    ra, rb = run(machine(True, "one"), machine(False, "two"))
    assert isinstance(ra, HandshakeFailed) and isinstance(rb, HandshakeFailed)
    assert "authentication failed" in str(ra) and "authentication failed" in str(rb)


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
    ra, rb = run(machine(True, version=2), machine(False))
    assert isinstance(rb, HandshakeFailed) and "version" in rb.reason
    assert isinstance(ra, HandshakeFailed) and ra.by_peer and "version" in ra.reason


def test_bytes_after_the_proof_are_handed_over() -> None:
    a, b = machine(True), machine(False)
    b.receive_data(a.data_to_send())
    assert b.next_event() is None
    a.receive_data(b.data_to_send())  # b's hello and proof together
    assert isinstance(a.next_event(), Authenticated)
    # a may now send application frames right behind its own proof.
    b.receive_data(a.data_to_send() + encode_frame(b"app-frame"))
    event = b.next_event()
    assert isinstance(event, Authenticated)
    assert event.leftover == encode_frame(b"app-frame")


def test_a_reflected_hello_is_refused() -> None:
    a = machine(True)
    hello = a.data_to_send()
    a.receive_data(hello)  # an attacker echoes our own hello back
    with pytest.raises(HandshakeFailed, match="itself"):
        a.next_event()


def test_a_replayed_proof_does_not_authenticate() -> None:
    # Record a good run, then replay the initiator's bytes to a fresh responder.
    a, b = machine(True), machine(False)
    first = a.data_to_send()
    b.receive_data(first)
    b.next_event()
    a.receive_data(b.data_to_send())
    a.next_event()
    proof = a.data_to_send()
    fresh = machine(False)
    fresh.receive_data(first)
    fresh.next_event()
    fresh.receive_data(proof)
    with pytest.raises(HandshakeFailed, match="authentication failed"):
        fresh.next_event()


@pytest.mark.parametrize(
    "payload",
    [
        b"not cbor at all \xff",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"triopycos": 1, "id": "not bytes"}),
        cbor2.dumps({"triopycos": 1, "id": b"x" * 16, "name": "n", "locations": [], "nonce": b""}),
        cbor2.dumps(cbor2.CBORTag(55799, {"triopycos": 1})),
        cbor2.dumps(
            {
                "triopycos": 1,
                "id": b"x" * 16,
                "name": "n",
                "locations": [["h", 70000]],
                "nonce": b"n" * 32,
            }
        ),
    ],
)
def test_malformed_hellos_are_refused(payload: bytes) -> None:
    b = machine(False)
    b.receive_data(encode_frame(payload))
    with pytest.raises(HandshakeFailed):
        b.next_event()
    b.data_to_send()  # its hello and the refusal; then it stays failed
    with pytest.raises(HandshakeFailed):
        b.next_event()


def test_oversized_handshake_frame_is_refused_before_its_body() -> None:
    b = machine(False)
    b.receive_data((MAX_HANDSHAKE_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(HandshakeFailed, match="exceeds"):
        b.next_event()
