"""The sans-IO protocol layer: bytes in, values and events out.

Nothing in here does I/O or awaits; services feed it bytes and get values back.  It
depends on nothing of triopycos above it: only on ``triopycos.values`` (the plain
value types that travel) below it.

* ``framing.py``: length-prefixed frames;
* ``codec/``: the message codec (CBOR with our tags, per-node registered types);
* ``messages.py``: the message kinds of a peer session;
* ``handshake.py``, ``auth.py``: the connection handshake and its key;
* ``strict_cbor.py``: the reader of what strangers send (the handshake's CBOR);
* ``discovery.py``: discovery datagrams;
* ``files.py``: the file-transfer protocol;
* ``errors.py``: what a peer's bad input raises; ``printable.py``: safe text of it.
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
