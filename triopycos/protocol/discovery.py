"""Discovery datagrams: how a node tells the nodes on its network where it listens.

Sans-IO: ``encode`` builds a datagram, ``decode`` checks and parses one.

Layout (at most ``MAX_DATAGRAM`` bytes, so one datagram fits an Ethernet frame)::

    b"TPYd" | version (1 byte) | CBOR body | HMAC-SHA256 (32 bytes)

The MAC covers everything before it and is keyed with the node's key (``derive_key``
of the shared secret, protocol/auth.py: one guess at the secret from a heard datagram
costs a scrypt) under its own label (so a discovery MAC can never stand in for a
handshake proof).  It is checked before the body is decoded: a datagram from a node
with another secret, or a forged or damaged one, is dropped without its body ever
being parsed.

Body (a CBOR map; plain CBOR, no tags)::

    {"kind": "announce" | "ping" | "forward",
     "id": 16-byte node id, "name": str,
     "locations": [[host, port], ...],    # where the sender accepts TCP connections
     "multicast": bool,                   # the sender's ipv4_udp_multicast
     "to": str,                           # ping/forward: the address that was pinged
     "relay": bool}                       # ping/forward: everyone answers, not just "to"

What each kind asks of the nodes that receive it:

* ``announce`` (broadcast or multicast when a node starts, and again now and then):
  connect to me;
* ``ping`` (sent to one host's ``udp_port`` by ``peer(host)``): connect to me, and
  pass this on to your network as a ``forward``, because only one of the nodes that
  share the port on that host receives a unicast datagram;
* ``forward``: connect to the node named in it if you listen at ``to`` (or whoever
  you are, with ``relay``).  A forward is never passed on again.

A replayed datagram can only make nodes connect to the node it names, and every
connection runs the full mutual handshake: no one is trusted on a datagram's word.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import cbor2

from .codec import loads_plain
from .errors import DecodeError
from .handshake import MAX_NAME, parse_locations
from .printable import describe

__all__ = [
    "DISCOVERY_VERSION",
    "IPV4_MULTICAST_GROUP",
    "IPV6_MULTICAST_GROUP",
    "MAX_DATAGRAM",
    "Announcement",
    "BadDatagram",
    "decode",
    "encode",
]

DISCOVERY_VERSION: Final = 2
MAX_DATAGRAM: Final = 1400
MAGIC: Final = b"TPYd"
_MAC_SIZE: Final = 32
_HEADER: Final = len(MAGIC) + 1
_ID_SIZE: Final = 16
_MAC_LABEL: Final = b"triopycos-discovery\x00"
KINDS: Final = frozenset({"announce", "ping", "forward"})

# Administratively scoped (RFC 2365) and site-local groups of our own choosing.
IPV4_MULTICAST_GROUP: Final = "239.255.84.80"
IPV6_MULTICAST_GROUP: Final = "ff05::5450"

DatagramKind = Literal["announce", "ping", "forward"]


class BadDatagram(ValueError):
    """A datagram that is not a valid announcement for us; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Announcement:
    """One decoded discovery datagram."""

    kind: DatagramKind
    node_id: bytes
    name: str
    locations: tuple[tuple[str, int], ...]
    to: str = ""
    relay: bool = False
    # Nodes using IPv4 broadcast and nodes using multicast ignore each other, as in
    # pycos; a socket bound to the wildcard hears both, so the sender says which.
    multicast: bool = False


def _mac(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, _MAC_LABEL + signed, hashlib.sha256).digest()


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def encode(
    message: Announcement, secret: str | bytes, *, version: int = DISCOVERY_VERSION
) -> bytes:
    """The datagram for ``message``; ``ValueError`` if it would not fit one datagram."""
    body: dict[str, Any] = {
        "kind": message.kind,
        "id": message.node_id,
        "name": message.name,
        "locations": [[host, port] for host, port in message.locations],
        "multicast": message.multicast,
    }
    if message.kind != "announce":
        body["to"] = message.to
        body["relay"] = message.relay
    signed = MAGIC + bytes([version]) + cbor2.dumps(body)
    datagram = signed + _mac(_key(secret), signed)
    if len(datagram) > MAX_DATAGRAM:
        raise ValueError(
            f"announcement is {len(datagram)} bytes, more than {MAX_DATAGRAM}: "
            "shorten the node name or the list of addresses"
        )
    return datagram


def decode(datagram: bytes, secret: str | bytes) -> Announcement:
    """Check and parse one datagram; ``BadDatagram`` says why it is not acceptable."""
    if len(datagram) > MAX_DATAGRAM:
        raise BadDatagram("oversized")
    if len(datagram) < _HEADER + _MAC_SIZE + 1 or not datagram.startswith(MAGIC):
        raise BadDatagram("not a discovery datagram")
    if datagram[len(MAGIC)] != DISCOVERY_VERSION:
        raise BadDatagram(f"discovery version {datagram[len(MAGIC)]}, we speak {DISCOVERY_VERSION}")
    signed, mac = datagram[:-_MAC_SIZE], datagram[-_MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(_key(secret), signed)):
        raise BadDatagram("authentication failed (another secret, or forged)")
    try:
        # Plain CBOR: every tag (bignums, shared references...) is refused here.
        body = loads_plain(signed[_HEADER:], max_depth=4)
    except DecodeError as exc:
        raise BadDatagram(f"undecodable body: {exc}") from None
    return _parse(body)


def _parse(body: object) -> Announcement:
    if type(body) is not dict:
        raise BadDatagram("body is not a map")
    raw_kind = body.get("kind")
    node_id = body.get("id")
    name = body.get("name")
    raw_locations = body.get("locations")
    if type(raw_kind) is not str or raw_kind not in KINDS:
        raise BadDatagram(f"unknown kind {describe(raw_kind)}")
    kind = cast(DatagramKind, raw_kind)
    if type(node_id) is not bytes or len(node_id) != _ID_SIZE:
        raise BadDatagram("bad node id")
    if type(name) is not str or len(name) > MAX_NAME:
        raise BadDatagram("bad name")
    locations = parse_locations(raw_locations) if type(raw_locations) is list else None
    if not locations:
        raise BadDatagram("bad locations")
    multicast = body.get("multicast")
    if type(multicast) is not bool:
        raise BadDatagram("bad multicast flag")
    if kind == "announce":
        return Announcement(kind, node_id, name, locations, multicast=multicast)
    to, relay = body.get("to"), body.get("relay")
    if type(to) is not str or len(to) > MAX_NAME or type(relay) is not bool:
        raise BadDatagram("bad ping fields")
    return Announcement(kind, node_id, name, locations, to, relay, multicast)
