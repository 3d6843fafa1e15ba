"""Seed inputs shared by the harnesses: valid messages of each kind, so that the
fuzzer starts from the grammar rather than from nothing."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal

from triopycos.protocol import codec
from triopycos.protocol.files import (
    DeleteRequest,
    SendRequest,
    encode_delete_request,
    encode_end,
    encode_send_request,
)
from triopycos.values import Location, MonitorStatus, PeerStatus


def messages() -> list[bytes]:
    """Encoded session messages using every type the codec carries."""
    ref = codec.Ref("task", b"\x01" * 16, 7, "t", Location("127.0.0.1", 9706))
    values: list[object] = [
        [1, 7, "hello"],
        [2, 1, 7, {"a": [1, 2.5, None, True], "b": b"\x00\xff"}],
        [0, 3, {1: "int key", (1, 2): "tuple key", 2**100: -(2**100)}],
        {frozenset({1, 2}), (3, 4), "x"},
        [datetime(2020, 1, 2, 3, 4, 5), datetime(2020, 1, 2, tzinfo=UTC), date(2020, 1, 2)],
        [Decimal("1.5"), Decimal("-0"), Decimal("NaN"), Decimal("1e3000")],
        uuid.UUID(int=5),
        [Location("::1", 1), ref, PeerStatus(Location("h", 1), "n", 1)],
        MonitorStatus(ref, ValueError, ValueError("boom", 1)),
        [KeyError("k"), OSError(2, "missing"), RuntimeError],
        [15, 9, "rps", [1, 2], {"k": 3}, []],
    ]
    return [codec.encode(value) for value in values]


def file_streams() -> list[bytes]:
    send = SendRequest("f.txt", "a/b", 5, 0o644, 0, 10**18, False, 2.5)
    return [
        encode_send_request(send),
        encode_send_request(send) + b"\x00\x00\x00\x05hello" + encode_end(),
        encode_send_request(send) + b"\x00\x00\x00\x02he\x00\x00\x00\x03llo" + encode_end(),
        encode_delete_request(DeleteRequest("f.txt", None)),
    ]


def write(corpus: str, seeds: Iterable[bytes]) -> None:
    """Add ``seeds`` to the corpus folder (named by their hash, so no duplicates)."""
    os.makedirs(corpus, exist_ok=True)
    for seed in seeds:
        path = os.path.join(corpus, hashlib.sha1(seed).hexdigest())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)


def corpus_dir(argv: list[str]) -> str | None:
    """The first corpus folder on libFuzzer's command line, if any."""
    return next((arg for arg in argv[1:] if not arg.startswith("-")), None)
