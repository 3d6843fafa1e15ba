"""Errors raised by the sans-IO protocol layer.

All of them mean "the peer sent something we will not accept": the connection that
carried it should be closed. None of them is ever raised for a local programming error
(those are ``TypeError``/``ValueError``/``RuntimeError`` as usual).
"""

from __future__ import annotations

from ..values.errors import PycosError

__all__ = ["DecodeError", "FrameTooLarge", "ProtocolError"]


class ProtocolError(PycosError):
    """The peer broke the wire protocol."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more bytes than the receiver accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class DecodeError(ProtocolError):
    """A frame's payload is not a valid message (bad CBOR, unknown tag, bad shape...)."""
