"""Coverage-guided fuzzing of the file-transfer protocol (atheris): the receiver's
state machine ``FileReceiving`` fed a whole connection's bytes in pieces, the
sender's ``parse_reply``, and ``check_path``.

Nothing but ``ProtocolError`` (``FileRefused`` is one) may come out; a path that
``check_path`` accepts never climbs; refusals are escaped.  Run (docs/testing.md,
"Fuzzing")::

    .venv/bin/python fuzz/fuzz_files.py -dict=fuzz/cbor.dict -timeout=2 \\
        -rss_limit_mb=1024 -max_total_time=600 fuzz/corpus/files
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import _seeds

    from triopycos.protocol.errors import ProtocolError
    from triopycos.protocol.files import (
        Data,
        DeleteRequest,
        End,
        FileReceiving,
        FileRefused,
        SendRequest,
        check_path,
        parse_reply,
    )


def receive(stream: bytes, max_chunk: int, piece: int, max_size: int | None) -> None:
    proto = FileReceiving(max_chunk)
    try:
        for start in range(0, len(stream), piece):
            proto.receive_data(stream[start : start + piece])
            while (event := proto.next_event()) is not None:
                if isinstance(event, SendRequest):
                    check_path(event.dir, event.name)
                    proto.go(event.size, max_size)
                elif isinstance(event, (DeleteRequest, End)):
                    if isinstance(event, DeleteRequest):
                        check_path(event.dir, event.name)
                    proto.done()
                    return
                else:
                    assert isinstance(event, Data) and len(event.data) > 0
        proto.eof()
    except ProtocolError as exc:
        assert "\n" not in str(exc), exc


def paths(dir: str | None, name: str) -> None:
    try:
        parts, base = check_path(dir, name)
    except FileRefused as exc:
        assert "\n" not in exc.reason and len(exc.reason) < 1000, exc.reason
        return
    assert base == name and "/" not in name and ".." not in parts


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 3)
    if which == 0:
        try:
            parse_reply(fdp.ConsumeBytes(fdp.remaining_bytes()))
        except ProtocolError as exc:
            assert "\n" not in str(exc), exc
    elif which == 1:
        dir = fdp.ConsumeUnicode(40) if fdp.ConsumeBool() else None
        paths(dir, fdp.ConsumeUnicode(40))
    else:
        max_chunk = fdp.ConsumeIntInRange(1, 64)
        piece = fdp.ConsumeIntInRange(1, 64)
        max_size = fdp.ConsumeIntInRange(0, 100) if fdp.ConsumeBool() else None
        receive(fdp.ConsumeBytes(fdp.remaining_bytes()), max_chunk, piece, max_size)


def main() -> None:
    corpus = _seeds.corpus_dir(sys.argv)
    if corpus is not None:
        # Prefixes that pick the receiver with a few parameters, then a stream.
        _seeds.write(corpus, [b"\x02\x10\x08\x00" + s for s in _seeds.file_streams()])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
