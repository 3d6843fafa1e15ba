"""The connection handshake: mutual proof of a shared secret, sans-IO.

The side that opened the connection (the initiator, I) proves itself first; the side
that accepted it (the responder, R) says nothing that depends on the secret, and
nothing about itself beyond a nonce, until that proof has verified::

    R -> I  CHALLENGE {"triopycos": version, "nonce": 32 random bytes}
    I -> R  HELLO     {"triopycos": version, "id": 16-byte node id, "name": str,
                       "locations": [[host, port], ...], "nonce": 32 random bytes,
                       "purpose": "peer" | "file", optionally "expect": node id}
    I -> R  PROOF     {"proof": HMAC(key, "triopycos/2 initiator" || T1)}
    R -> I  HELLO     {"id": ..., "name": ..., "locations": ...}
    R -> I  PROOF     {"proof": HMAC(key, "triopycos/2 responder" || T2)}

Both sides send their first frame at once (R its challenge, I its hello); I sends
its proof when the challenge arrives.  T1 is SHA-256 over the framed challenge and
I's hello, T2 over those, I's proof and R's hello, exactly as they crossed the wire:
a proof covers every field of both sides and both fresh nonces, so it can be neither
replayed on another connection nor reflected back (the role label differs).  The key
is ``auth.derive_key(secret)`` (scrypt): one guess at the secret from a captured
proof costs a scrypt, not a hash.

States (each side)::

    I: CHALLENGE --> HELLO --> PROOF --> DONE       R: HELLO --> PROOF --> DONE
    any state: a bad frame, a wrong proof ----------> send REFUSE --> FAILED
    any state: the peer's REFUSE arrives -----------> FAILED (its reason reported)

Rules:

* Every frame is at most ``MAX_HANDSHAKE_FRAME`` bytes and read by ``strict_cbor``
  (no tags, no simple values, bounded depth and item count), then checked against
  the grammar above: the exact keys, their types and sizes.  Nothing else is ever
  decoded before the peer is authenticated.
* Nothing a peer sent goes into a reason or a log line as it came: a REFUSE's reason
  is cut and escaped (``printable.escape``); other reasons are our own words.
* ``expect`` (from an initiator that knows whom it dials: discovery names the node it
  heard) makes any other node refuse ("not the node you expected"), so a stale or
  replayed announcement cannot reach the node now at that address.
* A side sends application frames only after it has verified the peer's proof; the
  bytes that follow the peer's proof in the same read are handed back as
  ``leftover``.
* Any error while reading or checking, even a bug of ours, is ``HandshakeFailed``
  (after queueing a REFUSE that says why): it ends this connection, nothing more.
* A responder that closes a connection to make room for another sends ``BUSY``
  first (outside this machine: ``BUSY_REFUSAL``); the initiator may dial again.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import cbor2

from .errors import ProtocolError
from .framing import FrameDecoder, encode_frame
from .printable import escape
from .strict_cbor import Value, loads

__all__ = [
    "BUSY",
    "BUSY_REFUSAL",
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

# 2: the responder proves itself last, proofs keyed with scrypt(secret), the strict
# reader.  A node of version 1 and one of version 2 refuse each other.
PROTOCOL_VERSION: Final = 2
MAX_HANDSHAKE_FRAME: Final = 4096
_NONCE_SIZE: Final = 32
_ID_SIZE: Final = 16
_PROOF_SIZE: Final = 32
MAX_LOCATIONS: Final = 16
MAX_NAME: Final = 255
MAX_REASON: Final = 200
# What the initiator will use the connection for: a peer session, or one file
# transfer (files get their own connections so they never delay messages).
PURPOSES: Final = frozenset({"peer", "file"})
# map -> locations -> [host, port]; a hello has fewer than 64 values in all.
_MAX_DEPTH: Final = 3
_MAX_ITEMS: Final = 64
# IPv4/IPv6 addresses (with a scope), host names: nothing that could forge a line.
_HOST: Final = re.compile(r"[0-9A-Za-z.:%_-]+")
_INITIATOR_LABEL: Final = b"triopycos/2 initiator"
_RESPONDER_LABEL: Final = b"triopycos/2 responder"


class HandshakeFailed(ProtocolError):
    """The handshake did not authenticate the peer. ``reason`` is for the log (our
    own words, or the peer's escaped); ``by_peer`` is True when the peer refused us."""

    def __init__(self, reason: str, *, by_peer: bool = False) -> None:
        super().__init__(("peer refused: " if by_peer else "") + reason)
        self.reason = reason
        self.by_peer = by_peer

    @property
    def busy(self) -> bool:
        """The peer closed this attempt to make room for another: try again."""
        return self.by_peer and self.reason == BUSY


#: The reason a node gives a connection it closes to make room for a newer one
#: (``services.admission``); a dialler that reads it tries again.
BUSY: Final = "busy: too many connections in their handshake, try again"
BUSY_REFUSAL: Final = encode_frame(cbor2.dumps({"refuse": BUSY}))


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
    CHALLENGE = enum.auto()
    HELLO = enum.auto()
    PROOF = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


def parse_locations(raw: list[Any]) -> tuple[tuple[str, int], ...] | None:
    """A peer's ``[[host, port], ...]`` as tuples, or None if it is not one (too
    many entries, a host that is not a short address or host name, a port outside
    1..65535).  Hosts are shown in log lines, so only their characters pass."""
    if len(raw) > MAX_LOCATIONS:
        return None
    locations: list[tuple[str, int]] = []
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not str
            or not 0 < len(item[0]) <= MAX_NAME
            or not _HOST.fullmatch(item[0])
            or type(item[1]) is not int
            or not 0 < item[1] < 65536
        ):
            return None
        locations.append((item[0], item[1]))
    return tuple(locations)


def _message(raw: bytes) -> dict[str, Value]:
    """A handshake frame as a map, or the failure it is (a REFUSE included)."""
    try:
        message = loads(raw, max_depth=_MAX_DEPTH, max_items=_MAX_ITEMS)
    except ProtocolError as exc:
        raise HandshakeFailed(f"malformed handshake frame: {exc}") from None
    if type(message) is not dict:
        raise HandshakeFailed("malformed handshake frame: not a map")
    if "refuse" in message:
        reason = message["refuse"]
        if len(message) != 1 or type(reason) is not str:
            raise HandshakeFailed("malformed refusal")
        raise HandshakeFailed(escape(reason, MAX_REASON), by_peer=True)
    return message


def _check_keys(
    message: dict[str, Value], what: str, required: Iterable[str], optional: Iterable[str] = ()
) -> None:
    required = frozenset(required)
    if not required <= message.keys() <= required | frozenset(optional):
        raise HandshakeFailed(f"malformed {what}: not the expected fields")


def _check_version(message: dict[str, Value], what: str) -> None:
    version = message.get("triopycos")
    if type(version) is not int:
        raise HandshakeFailed(f"malformed {what}: no protocol version")
    if version != PROTOCOL_VERSION:
        # At most 64 bits (strict_cbor), but only small numbers are worth showing.
        theirs = f"version {version}" if 0 <= version < 1000 else "an unknown version"
        raise HandshakeFailed(
            f"protocol version mismatch: peer speaks {theirs}, we speak {PROTOCOL_VERSION}"
        )


def _sized_bytes(message: dict[str, Value], key: str, size: int, what: str) -> bytes:
    value = message[key]
    if type(value) is not bytes or len(value) != size:
        raise HandshakeFailed(f"malformed {what}: bad {key}")
    return value


def _identity(
    message: dict[str, Value], what: str
) -> tuple[bytes, str, tuple[tuple[str, int], ...]]:
    node_id = _sized_bytes(message, "id", _ID_SIZE, what)
    name = message["name"]
    if type(name) is not str or not 0 < len(name) <= MAX_NAME:
        raise HandshakeFailed(f"malformed {what}: bad name")
    raw = message["locations"]
    locations = parse_locations(raw) if type(raw) is list else None
    if locations is None:
        raise HandshakeFailed(f"malformed {what}: bad locations")
    return node_id, name, locations


def _parse_hello(message: dict[str, Value]) -> tuple[PeerHello, bytes]:
    """The initiator's hello and its nonce."""
    _check_version(message, "hello")
    _check_keys(
        message, "hello", ("triopycos", "id", "name", "locations", "nonce", "purpose"), ("expect",)
    )
    node_id, name, locations = _identity(message, "hello")
    nonce = _sized_bytes(message, "nonce", _NONCE_SIZE, "hello")
    purpose = message["purpose"]
    if type(purpose) is not str or purpose not in PURPOSES:
        raise HandshakeFailed("malformed hello: unknown purpose")
    expect = _sized_bytes(message, "expect", _ID_SIZE, "hello") if "expect" in message else None
    return PeerHello(node_id, name, locations, purpose, expect), nonce


def _parse_responder_hello(message: dict[str, Value]) -> PeerHello:
    _check_keys(message, "hello", ("id", "name", "locations"))
    return PeerHello(*_identity(message, "hello"))


def _parse_challenge(message: dict[str, Value]) -> None:
    _check_version(message, "challenge")
    _check_keys(message, "challenge", ("triopycos", "nonce"))
    _sized_bytes(message, "nonce", _NONCE_SIZE, "challenge")


def _parse_proof(message: dict[str, Value]) -> bytes:
    _check_keys(message, "proof", ("proof",))
    return _sized_bytes(message, "proof", _PROOF_SIZE, "proof")


class Handshake:
    """One side of the handshake.  Feed it bytes with ``receive_data``; send what
    ``data_to_send`` returns; ``next_event`` gives ``Authenticated`` once done and
    raises ``HandshakeFailed`` if it failed.  ``key`` is ``auth.derive_key(secret)``."""

    def __init__(
        self,
        *,
        initiator: bool,
        key: bytes,
        node_id: bytes,
        name: str,
        locations: list[tuple[str, int]] | tuple[tuple[str, int], ...],
        nonce: bytes | None = None,
        version: int = PROTOCOL_VERSION,
        purpose: str = "peer",
        expect: bytes | None = None,
    ) -> None:
        self._initiator = initiator
        self._key = bytes(key)
        self._node_id = node_id
        self._name = name
        self._locations = [[host, port] for host, port in locations]
        self._expect = expect
        self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
        self._peer: PeerHello | None = None
        self._failure: HandshakeFailed | None = None
        # The frames that proofs cover, framed, in protocol order.
        self._transcript: list[bytes] = []
        nonce = nonce if nonce is not None else secrets.token_bytes(_NONCE_SIZE)
        first: dict[str, Any] = {"triopycos": version, "nonce": nonce}
        if initiator:
            first |= {"id": node_id, "name": name, "locations": self._locations}
            first["purpose"] = purpose
            if expect is not None:
                first["expect"] = expect
        self._first = encode_frame(cbor2.dumps(first))
        self._outgoing = bytearray(self._first)
        if initiator:
            self._state = _State.CHALLENGE
        else:
            self._state = _State.HELLO
            self._transcript.append(self._first)

    # -- I/O boundary -------------------------------------------------------------

    @property
    def hello_received(self) -> bool:
        """The peer's hello has arrived and is well formed (its proof may not have)."""
        return self._peer is not None

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
                raw = self._decoder.next_frame()
                if raw is None:
                    return None
                self._handle(raw)
            assert self._peer is not None
            return Authenticated(self._peer, self._decoder.take_unread())
        except HandshakeFailed as failure:
            self._fail(failure)
        except ProtocolError as error:  # the frame decoder's: our own words
            self._fail(HandshakeFailed(str(error)))
        except Exception as error:
            # A bug of ours must fail this connection only; the type says which.
            self._fail(HandshakeFailed(f"internal error ({type(error).__name__})"))

    # -- internals ----------------------------------------------------------------

    def _handle(self, raw: bytes) -> None:
        message = _message(raw)
        framed = encode_frame(raw)
        if self._state is _State.CHALLENGE:
            _parse_challenge(message)
            self._transcript += [framed, self._first]
            proof = self._mac(_INITIATOR_LABEL)
            self._send({"proof": proof})
            self._state = _State.HELLO
        elif self._state is _State.HELLO and self._initiator:
            hello = _parse_responder_hello(message)
            if hello.node_id == self._node_id:
                raise HandshakeFailed("connected to itself")
            if self._expect is not None and hello.node_id != self._expect:
                raise HandshakeFailed("not the node we expected (another one is there now)")
            self._transcript.append(framed)
            self._peer = hello
            self._state = _State.PROOF
        elif self._state is _State.HELLO:
            hello, _ = _parse_hello(message)
            if hello.node_id == self._node_id:
                raise HandshakeFailed("connected to itself")
            if hello.expect is not None and hello.expect != self._node_id:
                raise HandshakeFailed("not the node you expected (it has left this address)")
            self._transcript.append(framed)
            self._peer = hello
            self._state = _State.PROOF
        else:
            proof = _parse_proof(message)
            label = _RESPONDER_LABEL if self._initiator else _INITIATOR_LABEL
            if not hmac.compare_digest(proof, self._mac(label)):
                raise HandshakeFailed("authentication failed (wrong secret?)")
            if not self._initiator:
                self._transcript.append(framed)
                self._send({"id": self._node_id, "name": self._name, "locations": self._locations})
                self._send({"proof": self._mac(_RESPONDER_LABEL)})
            self._state = _State.DONE

    def _send(self, message: dict[str, Any]) -> None:
        framed = encode_frame(cbor2.dumps(message))
        self._transcript.append(framed)
        self._outgoing += framed

    def _mac(self, label: bytes) -> bytes:
        digest = hashlib.sha256(b"".join(self._transcript)).digest()
        return hmac.new(self._key, label + digest, hashlib.sha256).digest()

    def _fail(self, failure: HandshakeFailed) -> NoReturn:
        self._state = _State.FAILED
        self._failure = failure
        if not failure.by_peer:
            self._outgoing += encode_frame(cbor2.dumps({"refuse": failure.reason}))
        raise failure
