"""Coverage-guided fuzzing of the session codec, ``Codec.decode`` (atheris).

Each input is one frame's payload from an authenticated peer.  It must decode or
raise ``DecodeError``; what decodes must encode again (a task may forward it; only
"deeper than max_depth" may refuse) and that must decode at the next peer.  Slow
inputs (libFuzzer's ``-timeout``) and memory growth (``-rss_limit_mb``) are
findings too.  Run (docs/testing.md, "Fuzzing")::

    .venv/bin/python fuzz/fuzz_codec.py -dict=fuzz/cbor.dict -timeout=2 \\
        -rss_limit_mb=1024 -max_total_time=600 fuzz/corpus/codec
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import _seeds

    from triopycos.protocol.codec import Codec
    from triopycos.protocol.errors import DecodeError

codec = Codec()


def one_input(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except DecodeError as exc:
        text = str(exc)
        assert "\n" not in text and "\x1b" not in text, text
        return
    try:
        again = codec.encode(value)
    except ValueError as exc:
        assert "max_depth" in str(exc), exc
        return
    codec.decode(again)


def main() -> None:
    corpus = _seeds.corpus_dir(sys.argv)
    if corpus is not None:
        _seeds.write(corpus, _seeds.messages())
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
