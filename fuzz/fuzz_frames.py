"""Coverage-guided fuzzing of ``protocol.framing.FrameDecoder`` (atheris).

The input is a limit, a list of chunk sizes and a byte stream. The stream is fed to
the decoder in those chunks; the frames that come out must be exactly those of a
plain reference parse of the whole stream, ``eof()`` must accept exactly the
streams that end on a frame boundary, and nothing but ``ProtocolError`` may be
raised. Run (see docs/testing.md, "Fuzzing")::

    .venv/bin/python fuzz/fuzz_frames.py -max_total_time=600 fuzz/corpus/frames
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from triopycos.protocol.errors import FrameTooLarge, ProtocolError
    from triopycos.protocol.framing import FrameDecoder


def reference(stream: bytes, limit: int) -> tuple[list[bytes], str]:
    """The frames of ``stream`` and how it ends: "clean", "partial" or "too large"."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < 4:
            return frames, "partial"
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > limit:
            return frames, "too large"
        if len(stream) - pos - 4 < size:
            return frames, "partial"
        frames.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames, "clean"


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    limit = fdp.ConsumeIntInRange(0, 300) if fdp.ConsumeBool() else fdp.ConsumeUInt(4)
    cuts = [fdp.ConsumeIntInRange(0, 64) for _ in range(fdp.ConsumeIntInRange(0, 16))]
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    expected, ending = reference(stream, limit)
    decoder = FrameDecoder(limit)
    got: list[bytes] = []
    pos = 0
    chunks = []
    for cut in cuts:
        chunks.append(stream[pos : pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (frame := decoder.next_frame()) is not None:
                got.append(frame)
        decoder.eof()
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    except FrameTooLarge:
        assert ending == "too large", ending
        assert got == expected
        return
    except ProtocolError:
        assert ending == "partial", ending
        assert got == expected
        return
    assert ending == "clean", ending
    assert got == expected
    assert decoder.buffered == 0


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
