"""The sans-IO protocol layer: frames, the message codec, protocol errors.

Nothing in here does I/O or awaits; services feed it bytes and get values back.
"""

from .codec import DEFAULT_MAX_DEPTH, Codec, Ref, decode, encode, register_type
from .errors import DecodeError, FrameTooLarge, ProtocolError
from .framing import HEADER_SIZE, MAX_FRAME_SIZE_LIMIT, FrameDecoder, encode_frame, encode_frames

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "Codec",
    "DecodeError",
    "FrameDecoder",
    "FrameTooLarge",
    "ProtocolError",
    "Ref",
    "decode",
    "encode",
    "encode_frame",
    "encode_frames",
    "register_type",
]
