"""A strict reader for the small CBOR subset that strangers may send us.

Before a peer has proven it knows the secret, its bytes are read here, never by
``cbor2.loads``: cbor2's C decoder acts on semantic tags itself (big integers,
shared references, regular expressions, fractions...) before any hook of ours could
refuse them, so a few hundred bytes can cost seconds of CPU or a gigabyte.

Rules:

* Accepted: unsigned and negative integers of at most 64 bits, byte strings, UTF-8
  text strings, arrays and maps, all of definite length, in their shortest
  encoding; map keys are text and unique.
* Refused, as soon as its first byte is seen and before anything is built from it:
  every tag, every simple value (false, true, null, undefined...) and float,
  indefinite lengths, reserved encodings, longer-than-needed heads, a length beyond
  the bytes left, invalid UTF-8, bytes after the item.
* Bounded: ``max_depth`` levels of nesting, ``max_items`` values in all.  Work and
  memory are linear in the input, which the caller bounds (a handshake frame).
* ``CBORRefused`` names what was wrong and where, never a value that was read.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from .errors import ProtocolError

__all__ = ["CBORRefused", "Value", "loads"]

Value: TypeAlias = "int | bytes | str | list[Value] | dict[str, Value]"

_MAJOR_NAMES: Final = ("", "", "", "", "", "", "a CBOR tag", "a simple value or float")
# The smallest argument each head length may carry (shortest form only).
_MINIMUM: Final = {24: 24, 25: 0x100, 26: 0x1_0000, 27: 0x1_0000_0000}
_SIZES: Final = {24: 1, 25: 2, 26: 4, 27: 8}


class CBORRefused(ProtocolError):
    """The bytes are not in the accepted subset (see the module docstring)."""


class _Reader:
    __slots__ = ("data", "items", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items = max_items

    def refuse(self, what: str) -> CBORRefused:
        return CBORRefused(f"{what} at byte {self.pos}")

    def head(self) -> tuple[int, int]:
        """The next item's major type and argument."""
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise self.refuse("truncated item")
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        if major >= 6:
            raise self.refuse(_MAJOR_NAMES[major])
        if info < 24:
            self.pos = pos + 1
            return major, info
        size = _SIZES.get(info)
        if size is None:
            raise self.refuse("an indefinite length" if info == 31 else "a reserved encoding")
        end = pos + 1 + size
        if end > len(data):
            raise self.refuse("truncated item")
        argument = int.from_bytes(data[pos + 1 : end], "big")
        if argument < _MINIMUM[info]:
            raise self.refuse("a longer encoding than needed")
        self.pos = end
        return major, argument

    def take(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise self.refuse("a length beyond the data")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def count(self, length: int, width: int) -> None:
        """Room for ``length`` more values, each at least ``width`` bytes long."""
        if length > self.items or length * width > len(self.data) - self.pos:
            raise self.refuse("too many items")
        self.items -= length

    def value(self, depth: int) -> Value:
        major, argument = self.head()
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        if major == 2:
            return self.take(argument)
        if major == 3:
            return self.text(argument)
        if depth >= self.max_depth:
            raise self.refuse("nesting too deep")
        if major == 4:
            self.count(argument, 1)
            return [self.value(depth + 1) for _ in range(argument)]
        self.count(argument, 2)
        result: dict[str, Value] = {}
        for _ in range(argument):
            key_major, key_length = self.head()
            if key_major != 3:
                raise self.refuse("a map key that is not text")
            key = self.text(key_length)
            if key in result:
                raise self.refuse("a repeated map key")
            result[key] = self.value(depth + 1)
        return result

    def text(self, length: int) -> str:
        raw = self.take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.refuse("invalid UTF-8") from None


def loads(data: bytes, *, max_depth: int = 4, max_items: int = 256) -> Value:
    """The single item ``data`` holds, or ``CBORRefused``."""
    reader = _Reader(bytes(data), max_depth, max_items)
    if not data:
        raise reader.refuse("no item")
    result = reader.value(0)
    if reader.pos != len(data):
        raise reader.refuse("bytes after the item")
    return result
