"""Coverage-guided fuzzing of the handshake decoder with atheris (see fuzz/README.md).

Each input drives one side of the handshake (its first byte says which) with the
rest as the bytes a peer sent, cut into reads of varying sizes.  The properties:

* ``next_event`` gives None or ``Authenticated``, or raises ``HandshakeFailed``:
  any other exception is a finding (atheris reports it with the input);
* a reason never holds a newline or a control character;
* whatever ``strict_cbor.loads`` accepts, ``cbor2.loads`` reads as the same value
  (the strict reader accepts a subset, and reads it right).

The machine under test has a fixed node id and nonce, so a recorded exchange (the
seed corpus, ``--make-corpus DIR``) replays to the end, proofs included, and the
fuzzer starts from inputs that reach every state.
"""

from __future__ import annotations

import os
import sys

import atheris
import cbor2

# Coverage of the modules under test only (importing them imports all of triopycos).
with atheris.instrument_imports(include=["triopycos.protocol"]):
    from triopycos.protocol.handshake import Authenticated, Handshake, HandshakeFailed
    from triopycos.protocol.strict_cbor import CBORRefused, loads

KEY = bytes(range(32))  # no scrypt per input: the key is an input of the machine
# (node id, nonce, name) of each side: fixed, so a recorded exchange replays.
RESPONDER = (b"R" * 16, b"r" * 32, "responder")
INITIATOR = (b"I" * 16, b"i" * 32, "initiator")


def machine(initiator: bool) -> Handshake:
    node_id, nonce, name = INITIATOR if initiator else RESPONDER
    return Handshake(
        initiator=initiator,
        key=KEY,
        node_id=node_id,
        nonce=nonce,
        name=name,
        locations=[("127.0.0.1", 9705)],
    )


def drive(initiator: bool, reads: list[bytes]) -> None:
    side = machine(initiator)
    for chunk in reads:
        side.receive_data(chunk)
        try:
            event = side.next_event()
        except HandshakeFailed as failure:
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(failure)):
                raise AssertionError("a control character in a reason") from None
            side.data_to_send()
            return
        side.data_to_send()
        if isinstance(event, Authenticated):
            return


def test_one_input(data: bytes) -> None:
    """Byte 0: the mode (responder, initiator, strict reader).  For a side, byte 1
    sets the read size (1 + 17 * byte) and the rest is what the peer sent."""
    if len(data) < 2:
        return
    mode, size = data[0] % 3, 1 + 17 * data[1]
    if mode == 2:
        payload = data[1:]
        try:
            value = loads(payload, max_depth=3, max_items=64)
        except CBORRefused:
            return
        if cbor2.loads(payload) != value:
            raise AssertionError("strict_cbor and cbor2 disagree")
        return
    stream = data[2:]
    drive(mode == 1, [stream[i : i + size] for i in range(0, len(stream), size)] or [b""])


def _frames(stream: bytes) -> list[bytes]:
    payloads = []
    while stream:
        size = int.from_bytes(stream[:4], "big")
        payloads.append(stream[4 : 4 + size])
        stream = stream[4 + size :]
    return payloads


def make_corpus(folder: str) -> None:
    """Seeds: a full exchange as seen by each side, in one read and in small reads,
    and each frame of it alone for the strict reader."""
    os.makedirs(folder, exist_ok=True)
    responder, initiator = machine(False), machine(True)
    to_initiator, to_responder = responder.data_to_send(), initiator.data_to_send()
    initiator.receive_data(to_initiator)
    initiator.next_event()
    to_responder += initiator.data_to_send()
    responder.receive_data(to_responder)
    responder.next_event()
    to_initiator += responder.data_to_send()
    seeds = {}
    for selector in (255, 0, 1):
        seeds[f"responder-{selector}"] = bytes([0, selector]) + to_responder
        seeds[f"initiator-{selector}"] = bytes([1, selector]) + to_initiator
    for index, payload in enumerate(_frames(to_initiator) + _frames(to_responder)):
        seeds[f"cbor-{index}"] = bytes([2]) + payload
    seeds["cbor-refuse"] = bytes([2]) + cbor2.dumps({"refuse": "no"})
    for name, content in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(sys.argv[2])
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
