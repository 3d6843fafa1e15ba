"""The discovery datagram (protocol/discovery.py): round trips, and every damaged,
forged or foreign datagram refused before its body is decoded."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triopycos.protocol import discovery
from triopycos.protocol.discovery import (
    MAX_DATAGRAM,
    Announcement,
    BadDatagram,
    decode,
    encode,
)

SECRET = "s3cret"

hosts = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.just("example.org")
)
announcements = st.builds(
    Announcement,
    kind=st.sampled_from(["announce", "ping", "forward"]),
    node_id=st.binary(min_size=16, max_size=16),
    name=st.text(max_size=40),
    locations=st.lists(st.tuples(hosts, st.integers(1, 65535)), min_size=1, max_size=4).map(tuple),
    to=st.text(max_size=40),
    relay=st.booleans(),
    multicast=st.booleans(),
)


def _normal(message: Announcement) -> Announcement:
    if message.kind == "announce":  # to/relay travel only in pings and forwards
        return Announcement(
            "announce",
            message.node_id,
            message.name,
            message.locations,
            "",
            False,
            message.multicast,
        )
    return message


@given(announcements)
def test_round_trip(message: Announcement) -> None:
    datagram = encode(message, SECRET)
    assert len(datagram) <= MAX_DATAGRAM
    assert decode(datagram, SECRET) == _normal(message)


@given(announcements, st.data())
def test_any_changed_byte_is_refused(message: Announcement, data: st.DataObject) -> None:
    datagram = bytearray(encode(message, SECRET))
    index = data.draw(st.integers(0, len(datagram) - 1))
    datagram[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(BadDatagram):
        decode(bytes(datagram), SECRET)


@given(announcements, st.text(min_size=1))
def test_another_secret_is_refused(message: Announcement, other: str) -> None:
    if other == SECRET:
        return
    with pytest.raises(BadDatagram, match="authentication"):
        decode(encode(message, other), SECRET)


@given(st.binary(max_size=2000))
def test_random_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(BadDatagram):
        decode(data, SECRET)


def _signed(body: object, version: int = discovery.DISCOVERY_VERSION) -> bytes:
    """A datagram with a valid MAC around any body (what a node with the secret, but
    a bug or a newer version, could send)."""
    signed = discovery.MAGIC + bytes([version]) + cbor2.dumps(body)
    return signed + discovery._mac(SECRET.encode(), signed)


GOOD = {
    "kind": "announce",
    "id": b"\x01" * 16,
    "name": "n",
    "locations": [["10.0.0.1", 9705]],
    "multicast": False,
}


def test_the_good_body_is_accepted() -> None:
    assert decode(_signed(GOOD), SECRET).locations == (("10.0.0.1", 9705),)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kind": "shout"}, "unknown kind"),
        ({"id": b"short"}, "bad node id"),
        ({"name": 5}, "bad name"),
        ({"name": "x" * 300}, "bad name"),
        ({"locations": []}, "bad locations"),
        ({"locations": [["10.0.0.1", 0]]}, "bad locations"),
        ({"locations": [["10.0.0.1", 70000]]}, "bad locations"),
        ({"locations": [["", 1]]}, "bad locations"),
        ({"locations": [["10.0.0.1", 1]] * 17}, "bad locations"),
        ({"locations": "10.0.0.1:1"}, "bad locations"),
        ({"multicast": "yes"}, "bad multicast"),
        ({"kind": "ping"}, "bad ping fields"),
        ({"kind": "ping", "to": "h", "relay": 1}, "bad ping fields"),
    ],
)
def test_bad_fields_are_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(BadDatagram, match=reason):
        decode(_signed({**GOOD, **change}), SECRET)


def test_other_bodies_and_versions_are_refused() -> None:
    with pytest.raises(BadDatagram, match="not a map"):
        decode(_signed([1, 2, 3]), SECRET)
    with pytest.raises(BadDatagram, match="tag 6 is not accepted"):
        decode(_signed({**GOOD, "kind": cbor2.CBORTag(6, "announce")}), SECRET)
    with pytest.raises(BadDatagram, match="version 1"):  # before the MAC was scrypt-keyed
        decode(_signed(GOOD, version=1), SECRET)
    with pytest.raises(BadDatagram, match="oversized"):
        decode(_signed({**GOOD, "pad": b"x" * MAX_DATAGRAM}), SECRET)
    with pytest.raises(BadDatagram, match="undecodable"):
        signed = discovery.MAGIC + bytes([discovery.DISCOVERY_VERSION]) + b"\xff\xff"
        decode(signed + discovery._mac(SECRET.encode(), signed), SECRET)


def test_an_announcement_too_big_for_one_datagram_is_refused_when_encoding() -> None:
    message = Announcement("announce", b"\x01" * 16, "n" * 255, (("a" * 255, 1),) * 5)
    with pytest.raises(ValueError, match="more than 1400"):
        encode(message, SECRET)
