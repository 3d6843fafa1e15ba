"""describe/escape: outside values become bounded, one-line, escaped text."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from triopycos.protocol.printable import describe, escape


def test_text_is_escaped_and_bounded() -> None:
    assert escape("ok") == "ok"
    assert escape("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert escape("\u2028") == "\\u2028"
    long = escape("x" * 1000, limit=10)
    assert long == "xxxxxxxxxx... (1000 characters)"


def test_describe_names_only_the_type_of_non_text() -> None:
    big = 1 << 100_000  # str() of it would raise (more than 4300 digits)
    assert describe(big) == "a value of type int"
    nested: list[object] = []
    for _ in range(50):
        nested = [nested, nested]  # a shared-reference graph: repr is 2**50 long
    started = time.process_time()
    assert describe(nested) == "a value of type list"
    assert time.process_time() - started < 1.0
    assert describe({"k": 1}) == "a value of type dict"


def test_describe_bytes_and_str() -> None:
    assert describe("it's") == "'it\\'s'"
    assert describe(b"\x00\n") == repr(b"\x00\n")
    assert describe(b"y" * 100, limit=4) == "b'yyyy'... (100 bytes)"


class _Evil(str):
    def __getitem__(self, item: object) -> str:
        raise RuntimeError("subclass hook ran")


def test_str_subclass_hooks_do_not_run() -> None:
    assert escape(_Evil("abc")) == "abc"


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_escape_is_one_printable_line(text: str, limit: int) -> None:
    out = escape(text, limit)
    assert out.isascii()
    assert all(ch.isprintable() for ch in out)
    assert len(out) <= 10 * limit + 40
