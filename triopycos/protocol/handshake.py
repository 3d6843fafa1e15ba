"""The connection handshake: mutual proof of a shared secret, sans-IO.

Both sides run the same machine; ``initiator`` says which side opened the connection.

    START --(our HELLO is in data_to_send from the start)-------------------------.
      peer HELLO arrives, valid ---------> send PROOF --> PROVING                 |
      peer HELLO bad / wrong version ----> send REFUSE -> FAILED                  |
    PROVING                                                                       |
      peer PROOF arrives, HMAC matches --> DONE (next_event() gives Authenticated)|
      peer PROOF wrong ------------------> send REFUSE -> FAILED                  |
    any state: peer REFUSE arrives ------> FAILED (its reason is reported)        |

Rules:

* Only two kinds of frame are ever decoded before the peer is authenticated: the
  HELLO and the PROOF (or a REFUSE), each at most ``MAX_HANDSHAKE_FRAME`` bytes, and
  they are decoded with plain CBOR (no tags, no hooks): a tagged value or a field of
  the wrong type is a refusal.
* HELLO = {"triopycos": version, "id": 16-byte node id, "name": str,
  "locations": [[host, port], ...], "nonce": 32 random bytes, "purpose": "peer" or
  "file"} and, from an initiator that knows whom it dials (discovery names the node
  it heard), "expect": that node's id: any other node refuses ("not the node you
  expected"), so a stale or replayed announcement cannot reach the node now there.
* PROOF = {"proof": HMAC-SHA256(secret, role || transcript)} where transcript is the
  initiator's nonce, the responder's nonce, the initiator's id and the responder's id,
  and role is b"I" or b"R" for the side that computes it (so a proof can neither be
  replayed on another connection nor reflected back to its sender). The received
  proof is compared in constant time.
* A side sends application frames only after it has verified the peer's proof; the
  bytes that follow the peer's PROOF in the same read are handed back as ``leftover``.
* Failure sends a REFUSE = {"refuse": reason} when the peer should learn why (wrong
  version, wrong secret) so both sides can log it; the connection is then closed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from .errors import ProtocolError
from .framing import FrameDecoder, encode_frame

__all__ = [
    "MAX_HANDSHAKE_FRAME",
    "MAX_LOCATIONS",
    "MAX_NAME",
    "PROTOCOL_VERSION",
    "Authenticated",
    "Handshake",
    "HandshakeFailed",
    "PeerHello",
    "parse_locations",
]

PROTOCOL_VERSION: Final = 1
MAX_HANDSHAKE_FRAME: Final = 4096
_NONCE_SIZE: Final = 32
_ID_SIZE: Final = 16
MAX_LOCATIONS: Final = 16
MAX_NAME: Final = 255
# What the initiator will use the connection for: a peer session, or one file
# transfer (files get their own connections so they never delay messages).
PURPOSES: Final = frozenset({"peer", "file"})


class HandshakeFailed(ProtocolError):
    """The handshake did not authenticate the peer. ``reason`` is for the log;
    ``by_peer`` is True when the peer refused us (and said why)."""

    def __init__(self, reason: str, *, by_peer: bool = False) -> None:
        super().__init__(("peer refused: " if by_peer else "") + reason)
        self.reason = reason
        self.by_peer = by_peer


@dataclass(frozen=True, slots=True)
class PeerHello:
    """What a peer says about itself in its HELLO."""

    node_id: bytes
    name: str
    locations: tuple[tuple[str, int], ...]
    purpose: str = "peer"
    expect: bytes | None = None


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The handshake succeeded: ``peer`` is who we talk to; ``leftover`` are bytes of
    application frames that arrived right after the peer's proof."""

    peer: PeerHello
    leftover: bytes


class _State(enum.Enum):
    START = enum.auto()
    PROVING = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


def _hello_field(hello: dict[Any, Any], key: str, kind: type) -> Any:
    value = hello.get(key)
    if type(value) is not kind:
        raise HandshakeFailed(f"malformed hello: field {key!r} is not {kind.__name__}")
    return value


def _parse_hello(frame: dict[Any, Any]) -> PeerHello:
    node_id = _hello_field(frame, "id", bytes)
    if len(node_id) != _ID_SIZE:
        raise HandshakeFailed("malformed hello: bad node id")
    name = _hello_field(frame, "name", str)
    locations = parse_locations(_hello_field(frame, "locations", list))
    if locations is None:
        raise HandshakeFailed("malformed hello: bad locations")
    nonce = _hello_field(frame, "nonce", bytes)
    if len(nonce) != _NONCE_SIZE:
        raise HandshakeFailed("malformed hello: bad nonce")
    purpose = frame.get("purpose", "peer")
    if type(purpose) is not str or purpose not in PURPOSES:
        raise HandshakeFailed(f"malformed hello: unknown purpose {purpose!r}")
    expect = frame.get("expect")
    if expect is not None and (type(expect) is not bytes or len(expect) != _ID_SIZE):
        raise HandshakeFailed("malformed hello: bad expected id")
    return PeerHello(node_id, name, locations, purpose, expect)


def parse_locations(raw: list[Any]) -> tuple[tuple[str, int], ...] | None:
    """A peer's ``[[host, port], ...]`` as tuples, or None if it is not one (too
    many entries, a host that is not a short str, a port outside 1..65535)."""
    if len(raw) > MAX_LOCATIONS:
        return None
    locations: list[tuple[str, int]] = []
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not str
            or not 0 < len(item[0]) <= MAX_NAME
            or type(item[1]) is not int
            or not 0 < item[1] < 65536
        ):
            return None
        locations.append((item[0], item[1]))
    return tuple(locations)


class Handshake:
    """One side of the handshake.  Feed it bytes with ``receive_data``; send what
    ``data_to_send`` returns; ``next_event`` gives ``Authenticated`` once done and
    raises ``HandshakeFailed`` if it failed."""

    def __init__(
        self,
        *,
        initiator: bool,
        secret: str | bytes,
        node_id: bytes,
        name: str,
        locations: list[tuple[str, int]] | tuple[tuple[str, int], ...],
        nonce: bytes | None = None,
        version: int = PROTOCOL_VERSION,
        purpose: str = "peer",
        expect: bytes | None = None,
    ) -> None:
        self._initiator = initiator
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._node_id = node_id
        self._nonce = nonce if nonce is not None else secrets.token_bytes(_NONCE_SIZE)
        self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
        self._state = _State.START
        self._peer: PeerHello | None = None
        self._peer_nonce = b""
        self._failure: HandshakeFailed | None = None
        hello = {
            "triopycos": version,
            "id": node_id,
            "name": name,
            "locations": [[host, port] for host, port in locations],
            "nonce": self._nonce,
            "purpose": purpose,
        }
        if expect is not None:
            hello["expect"] = expect
        self._outgoing = bytearray(encode_frame(cbor2.dumps(hello)))

    # -- I/O boundary -------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes read from the peer."""
        if self._state in (_State.DONE, _State.FAILED):
            raise RuntimeError(f"receive_data() in state {self._state.name}")
        self._decoder.receive_data(data)

    def next_event(self) -> Authenticated | None:
        """Advance: ``Authenticated`` when done, None when more bytes are needed.
        Raises ``HandshakeFailed`` (after queueing a REFUSE for the peer if it
        should learn why)."""
        if self._failure is not None:
            raise self._failure
        try:
            while self._state is not _State.DONE:
                frame = self._next_message()
                if frame is None:
                    return None
                self._handle(frame)
        except HandshakeFailed as failure:
            self._fail(failure)
        except ProtocolError as error:
            self._fail(HandshakeFailed(str(error)))
        assert self._peer is not None
        return Authenticated(self._peer, self._decoder.take_unread())

    # -- internals ----------------------------------------------------------------

    def _next_message(self) -> dict[Any, Any] | None:
        raw = self._decoder.next_frame()
        if raw is None:
            return None
        try:
            # Plain CBOR: no tag hook, so any tag comes back as CBORTag and is refused.
            message = cbor2.loads(raw, max_depth=8)
        except Exception as exc:
            raise HandshakeFailed(f"undecodable handshake frame: {exc}") from None
        if type(message) is not dict:
            raise HandshakeFailed("handshake frame is not a map")
        if "refuse" in message:
            reason = message["refuse"]
            text = reason if isinstance(reason, str) else "no reason given"
            raise HandshakeFailed(text[:200], by_peer=True)
        return message

    def _handle(self, message: dict[Any, Any]) -> None:
        if self._state is _State.START:
            version = message.get("triopycos")
            if version != PROTOCOL_VERSION:
                raise HandshakeFailed(
                    f"protocol version mismatch: peer speaks {version!r}, "
                    f"we speak {PROTOCOL_VERSION}"
                )
            hello = _parse_hello(message)
            if hello.node_id == self._node_id:
                raise HandshakeFailed("connected to itself")
            if hello.expect is not None and hello.expect != self._node_id:
                raise HandshakeFailed("not the node you expected (it has left this address)")
            self._peer = hello
            self._peer_nonce = message["nonce"]
            self._outgoing += encode_frame(cbor2.dumps({"proof": self._proof(mine=True)}))
            self._state = _State.PROVING
        else:
            proof = message.get("proof")
            if type(proof) is not bytes or not hmac.compare_digest(proof, self._proof(mine=False)):
                raise HandshakeFailed("authentication failed (wrong secret?)")
            self._state = _State.DONE

    def _proof(self, *, mine: bool) -> bytes:
        assert self._peer is not None
        by_initiator = self._initiator if mine else not self._initiator
        if self._initiator:
            transcript = self._nonce + self._peer_nonce + self._node_id + self._peer.node_id
        else:
            transcript = self._peer_nonce + self._nonce + self._peer.node_id + self._node_id
        role = b"I" if by_initiator else b"R"
        mac = hmac.new(self._secret, b"triopycos-auth" + role + transcript, hashlib.sha256)
        return mac.digest()

    def _fail(self, failure: HandshakeFailed) -> None:
        self._state = _State.FAILED
        self._failure = failure
        if not failure.by_peer:
            self._outgoing += encode_frame(cbor2.dumps({"refuse": failure.reason}))
        raise failure
