"""Registered types belong to a codec (a node), under the process's registry; and the
codec's split into modules left the wire format as it was, byte for byte."""

from __future__ import annotations

import dataclasses
import gc
import uuid
import weakref
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import trio
from conftest import Cluster

from triopycos import (
    Location,
    MonitorStatus,
    PeerLost,
    PeerStatus,
    Pycos,
    PycosError,
    RemoteError,
    ServiceError,
    Task,
    register_type,
)
from triopycos.protocol import DecodeError, FrameTooLarge, ProtocolError
from triopycos.protocol.codec import Codec, Ref, TypeRegistry, default_types, encode

# -- the wire format ----------------------------------------------------------------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def every_kind_of_value() -> list[object]:
    ref = Ref("task", b"\x01" * 16, 7, "worker", Location("127.0.0.1", 9706))
    return [
        *[None, True, 1, 2**100, -(2**100), 1.5, "s", b"b", [1], {"a": 1}],
        *[{1: "x", (1, 2): None}, {3}, frozenset({4}), (5, 6), date(2020, 1, 2)],
        datetime(2020, 1, 2, 3, 4, 5, 6),
        datetime(2020, 1, 2, tzinfo=timezone(timedelta(hours=-5, microseconds=7))),
        *[Decimal("-1.50"), Decimal("sNaN"), uuid.UUID(int=5), Location("::1", 1), ref],
        MonitorStatus(ref, ValueError, "text"),
        MonitorStatus(ref, PeerLost, None),
        PeerStatus(Location("h", 2), "n", 1),
        *[ValueError("boom", 1), KeyError, PycosError("p")],
        ServiceError("network", OSError("x")),
        *[DecodeError("d"), FrameTooLarge(10, 5), RemoteError("x.Y", (1,), "tb")],
        *[Money(250), Money, [MonitorStatus(None, StopIteration, 3)]],
    ]


# What the codec made of every_kind_of_value() when it was one module
# (triopycos/protocol/codec.py at commit dfae51a), with Money registered as below.
WIRE_BEFORE_THE_SPLIT = bytes.fromhex(
    "9823f6f501c24d10000000000000000000000000c34d0ffffffffffffffffffffffffffb3ff80000"
    "00000000617341628101a1616101da7470000584016178da74700001820102f6d90102da74700001"
    "8103da747000028104da74700001820506d903ec6a323032302d30312d3032da74700003781a3230"
    "32302d30312d30325430333a30343a30352e303030303036da747000038273323032302d30312d30"
    "325430303a30303a30303b0000000430e233f8da74700004652d312e3530da7470000464734e614e"
    "d8255000000000000000000000000000000005da7470001082633a3a3101da747000118664746173"
    "6b50010101010101010101010101010101010766776f726b6572693132372e302e302e311925eada"
    "7470001283da7470001186647461736b50010101010101010101010101010101010766776f726b65"
    "72693132372e302e302e311925eada74700021736275696c74696e732e56616c75654572726f7264"
    "74657874da7470001283da7470001186647461736b50010101010101010101010101010101010766"
    "776f726b6572693132372e302e302e311925eada74700021727472696f7079636f732e506565724c"
    "6f7374f6da7470001383da7470001082616802616e01da7470002083736275696c74696e732e5661"
    "6c75654572726f728264626f6f6d0160da74700021716275696c74696e732e4b65794572726f72da"
    "7470002083781c7472696f7079636f732e5f6572726f72732e5079636f734572726f7281617060da"
    "7470002083781e7472696f7079636f732e5f6572726f72732e536572766963654572726f72817830"
    "7472696f7079636f73207365727669636520276e6574776f726b27206661696c65643a204f534572"
    "726f72282778272960da747000208378257472696f7079636f732e70726f746f636f6c2e6572726f"
    "72732e4465636f64654572726f7281616460da747000208378277472696f7079636f732e70726f74"
    "6f636f6c2e6572726f72732e4672616d65546f6f4c6172676581782e6672616d65206f6620313020"
    "6279746573206578636565647320746865206c696d6974206f66203520627974657360da74700020"
    "8363782e598101627462da74700030826c676f6c64656e2e4d6f6e657918fada747000216c676f6c"
    "64656e2e4d6f6e657981da7470001283f6da74700021766275696c74696e732e53746f7049746572"
    "6174696f6e03"
)


def test_the_wire_format_did_not_change() -> None:
    types = TypeRegistry(default_types)
    types.register(Money, "golden.Money", encode=lambda m: m.cents, decode=Money)
    codec = Codec(types=types)
    assert codec.encode(every_kind_of_value()) == WIRE_BEFORE_THE_SPLIT
    again = codec.decode(WIRE_BEFORE_THE_SPLIT)
    assert isinstance(again, list) and len(again) == len(every_kind_of_value())
    assert codec.encode(again) == WIRE_BEFORE_THE_SPLIT


def test_the_library_errors_are_registered_under_their_old_wire_names() -> None:
    """Names of modules they lived in once: moving a class must not rename it on the
    wire (a node of an earlier version would no longer rebuild it)."""
    library = {
        "triopycos._errors.PycosError": PycosError,
        "triopycos._errors.ServiceError": ServiceError,
        "triopycos.PeerLost": PeerLost,
        "triopycos.protocol.errors.ProtocolError": ProtocolError,
        "triopycos.protocol.errors.FrameTooLarge": FrameTooLarge,
        "triopycos.protocol.errors.DecodeError": DecodeError,
    }
    for name, cls in library.items():
        assert default_types.by_name[name].cls is cls
        assert default_types.by_type[cls].name == name
    node = TypeRegistry(default_types)
    assert type(Codec(types=node).decode(Codec(types=node).encode(PeerLost("x")))) is PeerLost


# -- registries ---------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int


@dataclasses.dataclass
class OtherPoint:
    x: int


def test_a_child_sees_its_parents_registrations_also_later_ones() -> None:
    parent = TypeRegistry()
    parent.register(Point, "p.Point")
    child = TypeRegistry(parent)
    grandchild = TypeRegistry(child)
    parent.register(OtherPoint, "p.Other")
    for registry in (child, grandchild):
        assert registry.by_name["p.Point"].cls is Point
        assert registry.by_type[OtherPoint].name == "p.Other"


def test_a_childs_registrations_stay_its_own() -> None:
    parent = TypeRegistry()
    child, sibling = TypeRegistry(parent), TypeRegistry(parent)
    assert child.register(Point, "c.Point") is Point
    assert "c.Point" not in parent.by_name and Point not in parent.by_type
    assert "c.Point" not in sibling.by_name and Point not in sibling.by_type
    assert sibling.register(OtherPoint, "c.Point") is OtherPoint  # the same name, elsewhere
    assert child.by_name["c.Point"].cls is Point


def test_a_child_cannot_register_differently_from_its_parent() -> None:
    parent = TypeRegistry()
    parent.register(Point, "p.Point")
    child = TypeRegistry(parent)
    with pytest.raises(ValueError, match="already registered"):
        child.register(OtherPoint, "p.Point")
    with pytest.raises(ValueError, match="already registered"):
        child.register(Point, "c.Point")
    child.register(Point, "p.Point")  # the same registration again: allowed


def test_a_childs_own_registration_wins_over_a_later_clash_in_its_parent() -> None:
    parent = TypeRegistry()
    child = TypeRegistry(parent)
    grandchild = TypeRegistry(child)
    child.register(Point, "c.Point")
    parent.register(OtherPoint, "c.Point")  # the parent's name clashes
    parent.register(Point, "p.Point")  # the parent's class clashes
    for registry in (child, grandchild):
        assert registry.by_name["c.Point"].cls is Point
        assert registry.by_type[Point].name == "c.Point"
        assert "p.Point" not in registry.by_name
        assert OtherPoint not in registry.by_type
    assert parent.by_name["c.Point"].cls is OtherPoint


def test_codecs_with_different_registries_rebuild_their_own_class() -> None:
    sender, receiver = TypeRegistry(default_types), TypeRegistry(default_types)
    sender.register(Point, "shared.Point")
    data = Codec(types=sender).encode([Point(3)])
    with pytest.raises(DecodeError, match="not registered here"):
        Codec(types=receiver).decode(data)
    with pytest.raises(TypeError, match="Point"):
        encode(Point(3))  # the process's codec does not know it either
    receiver.register(OtherPoint, "shared.Point")
    assert Codec(types=receiver).decode(data) == [OtherPoint(3)]


def test_a_codec_sees_a_registration_made_after_it_encoded() -> None:
    parent = TypeRegistry(default_types)
    codec = Codec(types=TypeRegistry(parent))
    assert codec.decode(codec.encode((1, 2))) == (1, 2)  # builds its encoder table
    with pytest.raises(TypeError, match="Point"):
        codec.encode(Point(1))
    parent.register(Point, "late.Point")
    assert codec.decode(codec.encode((Point(1), Point))) == (Point(1), Point)


def test_a_registry_does_not_keep_its_children_alive() -> None:
    parent = TypeRegistry()
    child = weakref.ref(TypeRegistry(parent))
    gc.collect()
    assert child() is None
    parent.register(Point, "p.Point")  # nothing left to update


def test_a_codec_needs_a_registry() -> None:
    with pytest.raises(TypeError, match="TypeRegistry"):
        Codec(types={})  # type: ignore[arg-type]
    assert Codec().types is default_types


# -- per node, on both transports ---------------------------------------------------------

LIMIT = 20


@dataclasses.dataclass
class Coin:
    cents: int


@dataclasses.dataclass
class CoinV2:
    cents: int


async def inbox(task: Task, count: int) -> list[Any]:
    task.register("inbox")
    return [await task.receive(timeout=10) for _ in range(count)]


async def send(sender: Pycos, receiver: Pycos, *messages: object) -> list[int]:
    """``messages`` sent by a task of ``sender`` to the inbox of ``receiver``."""

    async def body() -> list[int]:
        target = await Task.locate("inbox", receiver.location, timeout=10)
        assert target is not None
        return [target.send(message) for message in messages]

    result: list[int] = await sender.spawn(body).finish()
    return result


async def test_a_type_registered_on_one_node_is_known_there_only(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b") as (a, b):
            assert a.register_type(Coin, "tests.Coin") is Coin
            with pytest.raises(TypeError, match="Coin"):
                encode(Coin(1))  # not registered in the process
            received = b.spawn(inbox, 1)
            assert await send(a, b, Coin(1), "marker") == [0, 0]
            # b cannot rebuild a Coin: it dropped that message and the session went on.
            assert await received.finish() == ["marker"]
            b.register_type(Coin, "tests.Coin")
            received = b.spawn(inbox, 1)
            assert await send(a, b, Coin(2)) == [0]
            assert await received.finish() == [Coin(2)]


async def test_two_nodes_may_rebuild_different_classes_for_one_name(
    cluster: Cluster, clock: Any
) -> None:
    with trio.fail_after(LIMIT):
        async with cluster("a", "b") as (a, b):
            a.register_type(Coin, "tests.Versioned")
            b.register_type(CoinV2, "tests.Versioned")
            received = b.spawn(inbox, 1)
            await send(a, b, Coin(5))
            assert await received.finish() == [CoinV2(5)]


async def test_a_process_registration_reaches_the_nodes_already_open(
    cluster: Cluster, clock: Any, transport_kind: str
) -> None:
    @dataclasses.dataclass
    class Late:  # a new class each run: the registration is the process's, for good
        x: int

    with trio.fail_after(LIMIT):
        async with cluster("a", "b") as (a, b):
            received = b.spawn(inbox, 1)
            register_type(Late, f"tests.Late.{transport_kind}")
            await send(a, b, Late(7))
            assert await received.finish() == [Late(7)]
