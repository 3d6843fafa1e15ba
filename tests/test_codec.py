"""The CBOR message codec: exact round trips, registered types, refs, and bad input."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import io
import math
import os
import socket
import threading
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple, cast

import cbor2
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from triopycos.protocol import (
    Codec,
    DecodeError,
    FrameTooLarge,
    ProtocolError,
    Ref,
    decode,
    encode,
    register_type,
)
from triopycos.protocol import codec as codec_module
from triopycos.protocol.codec import (
    CBOR2_TAGS_KEPT,
    TAG_DATETIME,
    TAG_DECIMAL,
    TAG_EXCEPTION,
    TAG_FROZENSET,
    TAG_LOCATION,
    TAG_MONITOR_STATUS,
    TAG_PEER_STATUS,
    TAG_REF,
    TAG_REGISTERED,
    TAG_TUPLE,
)
from triopycos.protocol.codec.encoding import Encoder
from triopycos.values import (
    Location,
    MonitorStatus,
    PeerStatus,
    PycosError,
    RemoteError,
    ServiceError,
)


def roundtrip(value: object, codec: Codec | None = None) -> Any:
    codec = codec or Codec()
    return codec.decode(codec.encode(value))


def assert_same(a: object, b: object) -> None:
    """Equal values of the very same types, all the way down (NaN equals NaN)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b and math.copysign(1, a) == math.copysign(1, b)
    elif isinstance(a, Decimal):
        assert str(a) == str(b)  # exact: sign, exponent, NaN kind
    elif isinstance(a, MonitorStatus):
        assert isinstance(b, MonitorStatus)
        for x, y in [(a.info, b.info), (a.type, b.type), (a.value, b.value)]:
            assert_same(x, y)
    elif isinstance(a, datetime):
        assert isinstance(b, datetime)
        assert a.isoformat() == b.isoformat()
        assert a.utcoffset() == b.utcoffset()
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and len(a) == len(b)
        keys = {k: k for k in b}
        for key, value in a.items():
            assert_same(key, keys[key])
            assert_same(value, b[key])
    elif isinstance(a, set | frozenset):
        assert isinstance(b, set | frozenset) and len(a) == len(b)
        items = {item: item for item in b}
        for item in a:
            assert_same(item, items[item])
    else:
        assert a == b


def tagged(tag: int, value: object) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, value))


# -- test types -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Job:
    name: str
    args: tuple[object, ...]
    where: Point | None = None
    computed: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        raise AssertionError("decoding must not call __init__ of dataclasses")


class Plain:
    def __init__(self, a: object, b: object) -> None:
        self.a = a
        self.b = b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class AppError(Exception):
    pass


class AppErrorWithCodec(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"failed with {code}")
        self.code = code


class UnknownError(Exception):
    pass


class Pair(NamedTuple):
    left: int
    right: int


register_type(Point)
register_type(Job, "tests.Job")
register_type(Plain)
register_type(Slotted, "tests.Slotted", encode=lambda s: s.value, decode=lambda v: Slotted(int(v)))
register_type(Color)
register_type(AppError)
register_type(
    AppErrorWithCodec,
    encode=lambda e: e.code,
    decode=lambda code: AppErrorWithCodec(int(code)),
)
register_type(Pair, encode=list, decode=lambda items: Pair(*items))


P = collections.namedtuple("P", "x")
E = enum.Enum("E", "A")


def remote_tb(exc: object) -> str:
    text = vars(exc)["remote_traceback"]
    assert isinstance(text, str)
    return text


class FakeTask:
    """Stands in for Task/Channel/RPS: anything with _triopycos_ref_ travels as a Ref."""

    def __init__(self, ident: int) -> None:
        self.ident = ident

    def _triopycos_ref_(self) -> Ref:
        return Ref("task", b"\x01" * 16, self.ident, "server", Location("127.0.0.1", 9706))


# -- exact round trips ------------------------------------------------------------------

AWARE = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=-3, seconds=7)))
ODD_OFFSET = datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=1)))

SAMPLES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    -(2**200),
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "héllo \U0001f600",
    b"",
    b"\x00\xff",
    [],
    [1, [2, [3]]],
    (),
    (1,),
    (1, (2, ("x",))),
    [(), [()]],
    {},
    {"a": 1},
    {1: "int key", (1, 2): "tuple key", frozenset({3}): "frozenset key", None: 0, b"k": 1},
    {2.5: {(): {frozenset(): []}}},
    set(),
    {1, "a", (2, 3)},
    frozenset(),
    frozenset({1, frozenset({2})}),
    [set(), frozenset()],
    datetime(2020, 1, 2, 3, 4, 5, 6),
    datetime(1, 1, 1),
    datetime(2020, 1, 2, tzinfo=UTC),
    AWARE,
    ODD_OFFSET,
    date(2020, 1, 2),
    Decimal("1.50"),
    Decimal("-0"),
    Decimal("NaN"),
    Decimal("-sNaN123"),
    Decimal("-Infinity"),
    Decimal("1E+999"),
    uuid.UUID(int=0x12345678123456781234567812345678),
    Location("127.0.0.1", 9706),
    Location("::1", 0),
    {Location("h", 1): Location("h", 2)},
    Ref("channel", b"id", "chan", "chan", Location("10.0.0.1", 1)),
    MonitorStatus(None, StopIteration, {"result": (1, 2)}),
    MonitorStatus(FakeTask(1)._triopycos_ref_(), ZeroDivisionError, "trace"),
    PeerStatus(Location("127.0.0.1", 1), "peer", PeerStatus.Online),
    PeerStatus(Location("127.0.0.1", 2), "peer", PeerStatus.Offline),
    Point(1, 2),
    {Point(1, 2): [Point(3, 4)]},
    Plain([1], {"x": (2,)}),
    Color.GREEN,
    {Color.RED: Color.GREEN},
    Pair(1, 2),
    [ValueError, KeyError, AppError, Point],
]


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_exact_round_trip(value: object) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_module_level_functions(value: object) -> None:
    assert_same(value, decode(encode(value)))


def test_dataclass_round_trip_skips_init_and_keeps_all_fields() -> None:
    job = Job.__new__(Job)
    for name, value in [("name", "j"), ("args", (1, "a")), ("where", Point(0, 0))]:
        setattr(job, name, value)
    job.computed = 42
    decoded = roundtrip(job)
    assert type(decoded) is Job
    assert (decoded.name, decoded.args, decoded.where, decoded.computed) == (
        "j",
        (1, "a"),
        Point(0, 0),
        42,
    )


def test_custom_encode_decode() -> None:
    decoded = roundtrip([Slotted(7)])
    assert type(decoded[0]) is Slotted and decoded[0].value == 7


def test_aware_datetime_keeps_its_offset() -> None:
    decoded = roundtrip(AWARE)
    assert decoded == AWARE and decoded.utcoffset() == AWARE.utcoffset()


# -- exceptions -------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_builtin_exception_comes_back_as_itself() -> None:
    decoded = roundtrip(raised(ValueError("bad", 42)))
    assert type(decoded) is ValueError
    assert decoded.args == ("bad", 42)
    assert "Traceback" in remote_tb(decoded)
    assert "ValueError: ('bad', 42)" in remote_tb(decoded)


def test_exception_never_raised_has_empty_traceback() -> None:
    decoded = roundtrip(KeyError("k"))
    assert type(decoded) is KeyError and decoded.args == ("k",)
    assert remote_tb(decoded) == ""


@pytest.mark.parametrize(
    "exc",
    [
        OSError(2, "No such file"),
        FileNotFoundError(2, "No such file"),
        StopIteration((1, 2)),
        ExceptionGroup("many", [ValueError(1), TypeError(2)]),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        GeneratorExit(),
        SystemExit(3),
    ],
    ids=repr,
)
def test_awkward_builtin_exceptions(exc: BaseException) -> None:
    decoded = roundtrip(exc)
    assert type(decoded) is type(exc)
    assert repr(decoded.args) == repr(exc.args)


def test_registered_exception_comes_back_as_itself() -> None:
    decoded = roundtrip(raised(AppError("boom")))
    assert type(decoded) is AppError and decoded.args == ("boom",)
    assert "AppError: boom" in remote_tb(decoded)


def test_exception_registered_with_a_codec() -> None:
    decoded = roundtrip(AppErrorWithCodec(5))
    assert type(decoded) is AppErrorWithCodec and decoded.code == 5


def test_library_exceptions_come_back() -> None:
    for exc in [PycosError("x"), DecodeError("bad"), FrameTooLarge(10, 5)]:
        decoded = roundtrip(exc)
        assert type(decoded) is type(exc) and decoded.args == exc.args
    service = roundtrip(ServiceError("listener", OSError("no")))
    assert type(service) is ServiceError and service.args == (
        "triopycos service 'listener' failed: OSError('no')",
    )


def test_unknown_exception_becomes_remote_error() -> None:
    decoded = roundtrip(raised(UnknownError("what", 1)))
    assert type(decoded) is RemoteError
    assert decoded.type_name == f"{__name__}.UnknownError"
    assert decoded.remote_args == ("what", 1)
    assert "UnknownError: ('what', 1)" in decoded.traceback
    assert remote_tb(decoded) == decoded.traceback


def test_remote_error_forwards_the_original() -> None:
    first = roundtrip(raised(UnknownError("x")))
    again = roundtrip(first)
    assert again == first


def test_unencodable_exception_args_become_repr() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        exc = ValueError(sock, "kept", [1, (2,)], {1, 2})
        decoded = roundtrip(exc)
        assert decoded.args[0] == repr(sock)
    assert decoded.args[1:] == ("kept", [1, (2,)], {1, 2})


def test_exception_whose_args_hold_itself() -> None:
    exc = ValueError()
    exc.args = (exc,)
    decoded = roundtrip(exc)
    assert type(decoded) is ValueError
    assert len(decoded.args) == 1 and isinstance(decoded.args[0], str)
    nested = ValueError()
    nested.args = ([nested], KeyError(nested))
    decoded = roundtrip(nested)
    assert type(decoded.args[0]) is list and type(decoded.args[0][0]) is str
    assert type(decoded.args[1]) is KeyError and type(decoded.args[1].args[0]) is str


def test_exception_classes() -> None:
    status = roundtrip(MonitorStatus(FakeTask(3), ZeroDivisionError, "trace"))
    assert type(status) is MonitorStatus
    assert status.type is ZeroDivisionError and status.value == "trace"
    assert status.info == FakeTask(3)._triopycos_ref_()
    assert roundtrip(AppError) is AppError
    assert roundtrip(UnknownError) is RemoteError
    assert roundtrip([GeneratorExit, StopIteration]) == [GeneratorExit, StopIteration]


def test_only_exception_and_registered_classes_travel() -> None:
    with pytest.raises(TypeError, match="'int'"):
        encode(int)
    with pytest.raises(TypeError, match="'UnregisteredThing'"):
        encode({"cls": UnregisteredThing})


class UnregisteredThing:
    pass


# -- refs -------------------------------------------------------------------------------


def test_ref_objects_travel_as_refs() -> None:
    decoded = roundtrip({"to": FakeTask(5), "reply": [FakeTask(6)]})
    assert decoded == {
        "to": FakeTask(5)._triopycos_ref_(),
        "reply": [FakeTask(6)._triopycos_ref_()],
    }


def test_resolve_ref_hook_substitutes() -> None:
    seen: list[Ref] = []

    def resolve(ref: Ref) -> object:
        seen.append(ref)
        return ("resolved", ref.ident)

    codec = Codec(resolve)
    message = codec.decode(codec.encode([FakeTask(1), MonitorStatus(FakeTask(2), StopIteration)]))
    assert message == [("resolved", 1), MonitorStatus(("resolved", 2), StopIteration, None)]
    assert [ref.ident for ref in seen] == [1, 2]
    assert all(type(ref.location) is Location for ref in seen)


def test_resolve_ref_failure_is_a_decode_error() -> None:
    def resolve(ref: Ref) -> object:
        raise LookupError("no such node")

    codec = Codec(resolve)
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(FakeTask(1)))


def test_bad_ref_method() -> None:
    class Broken:
        def _triopycos_ref_(self) -> object:
            return "not a ref"

    with pytest.raises(TypeError, match="must return a Ref"):
        encode(Broken())
    with pytest.raises(TypeError, match="wrong type"):
        encode(Ref("task", "not bytes", 1, "n", Location("h", 1)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrong type"):
        encode(PeerStatus(("h", 1), "n", 1))  # type: ignore[arg-type]


# -- registration -----------------------------------------------------------------------


def test_register_type_returns_the_class_and_is_idempotent() -> None:
    assert register_type(Point) is Point
    assert register_type(Job, "tests.Job") is Job


def test_name_taken_by_another_class() -> None:
    @dataclasses.dataclass
    class Other:
        x: int

    with pytest.raises(ValueError, match="already registered"):
        register_type(Other, f"{__name__}.Point")
    with pytest.raises(ValueError, match="already registered"):
        register_type(Job, "another.name")


@pytest.mark.parametrize("cls", [int, tuple, dict, datetime, Location, Ref, RemoteError, type])
def test_builtin_types_cannot_be_registered(cls: type) -> None:
    with pytest.raises(ValueError, match="encoded by triopycos itself"):
        register_type(cls)


def test_register_needs_a_class() -> None:
    with pytest.raises(TypeError):
        register_type(cast(Any, Point(1, 2)))


def test_unregistered_name_on_decode() -> None:
    with pytest.raises(DecodeError, match=r"'nowhere\.Thing' is not registered"):
        decode(tagged(TAG_REGISTERED, ["nowhere.Thing", {}]))


def test_dataclass_payload_must_match_the_fields() -> None:
    with pytest.raises(DecodeError, match="fields"):
        decode(tagged(TAG_REGISTERED, [f"{__name__}.Point", {"x": 1}]))
    with pytest.raises(DecodeError, match="str keys"):
        decode(tagged(TAG_REGISTERED, [f"{__name__}.Point", [1, 2]]))


def test_class_without_dict_needs_a_codec() -> None:
    class NoDict:
        __slots__ = ()

    register_type(NoDict, "tests.NoDict")
    with pytest.raises(TypeError, match="no __dict__"):
        encode(NoDict())


# -- what cannot be sent ----------------------------------------------------------------


def test_unsupported_type_named_in_type_error() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(TypeError, match="cannot encode object of type 'socket'"),
    ):
        encode({"sock": sock})


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (object(), "object"),
        (bytearray(b"x"), "bytearray"),
        (memoryview(b"x"), "memoryview"),
        (range(3), "range"),
        (collections.OrderedDict(a=1), "OrderedDict"),
        (collections.deque([1]), "deque"),
        (P(1), "P"),
        (E.A, "E"),
        (lambda: None, "function"),
        ((i for i in range(0)), "generator"),
        (complex(1, 2), "complex"),
        (cbor2.CBORTag(1, 2), "CBORTag"),
        ({}.keys(), "dict_keys"),
        ([[{"deep": (1, {2: [object()]})}]], "object"),
        ({object(): 1}, "object"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_values(value: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"type '{name}'"):
        encode(value)


def _method_of_a_list() -> object:
    return [].append


class _Plain:
    def __init__(self) -> None:
        self.x = 1


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: lambda: None, "functions"),
        (lambda: test_unsupported_values, "functions"),
        (_method_of_a_list, "functions"),
        (lambda: len, "functions"),
        (lambda: open(os.devnull), "open files"),  # noqa: SIM115 (closed by the test)
        (lambda: io.BytesIO(b"x"), "open files"),
        (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "sockets"),
        (threading.Lock, "locks"),
        (threading.RLock, "locks"),
        (threading.Condition, "locks"),
        (trio.Lock, "locks"),
        (trio.Event, "locks"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_what_can_never_be_sent_says_so(make: Any, kind: str) -> None:
    """No registration makes these travel: the error says they cannot be sent, and
    does not suggest register_type."""
    value = make()
    try:
        with pytest.raises(TypeError) as raised:
            encode({"x": [value]})
    finally:
        close = getattr(value, "close", None)
        if close is not None:
            close()
    text = str(raised.value)
    assert f"{kind} " in text and "cannot be sent" in text, text
    assert "register_type" not in text


def test_a_plain_class_is_told_to_register() -> None:
    with pytest.raises(TypeError, match=r"plain data class.*register_type\(\)"):
        encode(_Plain())


def test_lone_surrogate_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode("\ud800")


def test_depth_limit_on_encode() -> None:
    codec = Codec(max_depth=10)
    nested: object = 0
    for _ in range(10):
        nested = [nested]
    assert roundtrip(nested, codec) == nested
    with pytest.raises(ValueError, match="max_depth=10"):
        codec.encode([nested])
    with pytest.raises(ValueError, match="max_depth=10"):
        codec.encode(((((((1,),),),),),))


def test_whatever_encodes_within_max_depth_decodes() -> None:
    # Tagged leaves add CBOR levels the encoder's count leaves out: the decoder's
    # allowance must cover them.
    codec = Codec(max_depth=10)
    leaf = [
        Location("h", 1),
        PeerStatus(Location("h", 1), "n", 1),
        MonitorStatus(FakeTask(1), ValueError, Decimal(1)),
        (FakeTask(2), datetime(2020, 1, 1, tzinfo=UTC), 2**70),
    ]
    encoded = 0
    for wrappers in range(12):
        nested: object = leaf
        for _ in range(wrappers):
            nested = {"k": nested}
        try:
            data = codec.encode(nested)
        except ValueError:
            break
        codec.decode(data)
        encoded += 1
    assert encoded == 8  # 7 dicts + the list + the tuple (a tag and an array) = 10


def test_very_deep_and_cyclic_values_fail_cleanly() -> None:
    deep: list[object] = []
    for _ in range(100_000):  # cbor2 alone would overflow the C stack
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        encode(deep)
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="cycle"):
        encode(cycle)
    loop: dict[str, object] = {}
    loop["self"] = (loop,)
    with pytest.raises(ValueError):
        encode(loop)


@pytest.mark.parametrize("bad", [0, -1, 10_000])
def test_bad_max_depth(bad: int) -> None:
    with pytest.raises(ValueError):
        Codec(max_depth=bad)


def test_plain_messages_skip_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Encoder, obj: object) -> bytes:
        raise AssertionError("hooked encoder used")

    monkeypatch.setattr(Encoder, "_encode_hooked", fail)
    message = {"kind": "send", "n": [1, 2.5, None, True], "b": b"x" * 4096, "s": {1, 2}}
    assert decode(encode(message)) == message
    with pytest.raises(AssertionError):
        encode({"t": (1,)})


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x1c",  # reserved additional information
        b"\x62a",  # truncated text
        b"\x62\xff\xfe",  # invalid UTF-8
        b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",  # 2**63 bytes announced
        b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"\x9f\x01\xff",  # indefinite length
        b"\xa2\x01\x01\x01\x02",  # duplicate key
        b"\x81" * 1000 + b"\x00",  # too deep
        encode({"a": [1, 2, 3]})[:-1],  # truncated
    ],
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "tag", [0, 1, 4, 5, 24, 25, 28, 29, 30, 35, 36, 100, 256, 55799, 0x7470_00FF]
)
def test_tags_we_do_not_send_are_refused(tag: int) -> None:
    for payload in [0, "2020-01-01T00:00:00Z", [1, 2], b"\x00" * 16]:
        with pytest.raises(DecodeError, match="tag"):
            decode(tagged(tag, payload))


@pytest.mark.parametrize(
    ("tag", "payload"),
    [
        (TAG_TUPLE, 1),
        (TAG_FROZENSET, "x"),
        (TAG_FROZENSET, [[1]]),  # unhashable item
        (TAG_DATETIME, 5),
        (TAG_DATETIME, "not a date"),
        (TAG_DECIMAL, "one"),
        (TAG_DECIMAL, 1),
        (TAG_LOCATION, ["h"]),
        (TAG_LOCATION, ["h", "80"]),
        (TAG_LOCATION, ["h", 70000]),
        (TAG_LOCATION, ["", 1]),
        (TAG_REF, ["task", b"id", 1, "n", "h"]),
        (TAG_REF, ["task", "id", 1, "n", "h", 1]),
        (TAG_REF, ["task", b"id", 1.5, "n", "h", 1]),
        (TAG_MONITOR_STATUS, [1, 2]),
        (TAG_PEER_STATUS, [["h", 1], "n", 1]),
        (TAG_PEER_STATUS, [cbor2.CBORTag(TAG_LOCATION, ["h", 1]), "n", 7]),
        (TAG_EXCEPTION, ["builtins.ValueError", 1, ""]),
        (TAG_EXCEPTION, [1, [], ""]),
        (TAG_EXCEPTION, ["builtins.ValueError", []]),
        (TAG_REGISTERED, [f"{__name__}.Point"]),
        (TAG_REGISTERED, [1, {}]),
        (2, "not bytes"),  # bignum
        (258, 1),  # set
        (37, b"short"),  # UUID
    ],
)
def test_wrong_payload_shapes(tag: int, payload: object) -> None:
    with pytest.raises(DecodeError):
        decode(tagged(tag, payload))


def test_exception_types_are_only_looked_up_in_builtins() -> None:
    for name in ["os.system", "builtins.open", "builtins.object", "subprocess.CalledProcessError"]:
        decoded = decode(tagged(TAG_EXCEPTION, [name, ["echo hi"], ""]))
        assert type(decoded) is RemoteError and decoded.type_name == name
        assert decode(tagged(TAG_EXCEPTION + 1, name)) is RemoteError


def test_decode_errors_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        decode(b"\xff")


def test_no_cbor2_builtin_tag_goes_unrefused() -> None:
    # Probe every tag up to 70000 the way cbor2 would see it: a tag that never reaches
    # tag_hook has a built-in decoder, and must be one we keep or one we refuse.
    class NotBuiltIn(Exception):
        pass

    def hook(tag: object, immutable: bool) -> object:
        raise NotBuiltIn

    builtin = set()
    for tag in [*range(70_000), 0xD9D9F7, 2**32 - 1, 2**32, 2**64 - 1]:
        try:
            cbor2.loads(tagged(tag, 0), tag_hook=hook)
        except cbor2.CBORDecodeError as exc:
            if isinstance(exc.__cause__, NotBuiltIn):
                continue
        builtin.add(tag)
    assert builtin <= CBOR2_TAGS_KEPT | codec_module.CBOR2_TAGS_REFUSED


# -- properties -------------------------------------------------------------------------

offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
datetimes = st.datetimes() | st.datetimes(timezones=st.builds(timezone, offsets))
locations = st.builds(Location, st.text(min_size=1, max_size=20), st.integers(0, 65535))
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | datetimes
    | st.dates()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | locations
    | st.sampled_from(list(Color))
    | st.builds(Point, st.integers(), st.integers())
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
leaves = hashable_leaves | st.floats() | st.decimals(allow_nan=True)
values = st.recursive(
    leaves | hashables,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.builds(MonitorStatus, inner, st.sampled_from([StopIteration, ValueError]), inner)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip_property(value: object) -> None:
    assert_same(value, roundtrip(value))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_mangled_messages_raise_only_decode_errors(value: object, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    cut = data.draw(st.integers(0, len(encoded)))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(encoded) - 1), st.integers(0, 255)), max_size=4)
    )
    for position, byte in flips:
        encoded[position] = byte
    with contextlib.suppress(DecodeError):
        decode(bytes(encoded[:cut] if data.draw(st.booleans()) else encoded))


def test_every_error_from_hooks_is_wrapped() -> None:
    def explode(ref: Ref) -> object:
        raise MemoryError

    codec = Codec(explode)
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(FakeTask(1)))


@pytest.mark.parametrize("ident", [0, -1, 2**63, (2**61 - 1) * 2**70])
def test_a_task_reference_with_an_id_out_of_range_is_refused(ident: int) -> None:
    # Task ids count from 1 and become dict keys of the receiving node: a peer's
    # huge multiples of 2**61 - 1 would all hash alike.
    raw = cbor2.dumps(
        cbor2.CBORTag(codec_module.TAG_REF, ["task", b"\x01" * 16, ident, "n", "127.0.0.1", 1])
    )
    with pytest.raises(DecodeError, match="Ref payload"):
        Codec().decode(raw)
