"""Coverage-guided fuzzing of discovery datagrams, ``protocol.discovery.decode``
(atheris).

Half the inputs are signed with the secret before decoding, so the fuzzer reaches
the body's parser (the MAC check stops everything else); the rest are taken as
they are.  Only ``BadDatagram`` may come out, its reason escaped.  Run
(docs/testing.md, "Fuzzing")::

    .venv/bin/python fuzz/fuzz_discovery.py -dict=fuzz/cbor.dict -timeout=2 \\
        -rss_limit_mb=1024 -max_total_time=600 fuzz/corpus/discovery
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import _seeds

    from triopycos.protocol import discovery

SECRET = b"fuzzing secret"


def one_input(data: bytes) -> None:
    if data[:1] == b"S":
        # Sign the rest as a body: magic, version, body, MAC.
        signed = discovery.MAGIC + bytes([discovery.DISCOVERY_VERSION]) + data[1:]
        data = signed + discovery._mac(SECRET, signed)
    try:
        message = discovery.decode(data, SECRET)
    except discovery.BadDatagram as exc:
        assert "\n" not in exc.reason and len(exc.reason) < 1000, exc.reason
        return
    assert isinstance(message, discovery.Announcement)
    assert len(message.node_id) == 16 and message.locations


def main() -> None:
    corpus = _seeds.corpus_dir(sys.argv)
    if corpus is not None:
        seeds = []
        for kind in ("announce", "ping", "forward"):
            message = discovery.Announcement(
                kind, b"\x01" * 16, "node", (("127.0.0.1", 9706), ("::1", 9706)), "h", True
            )
            datagram = discovery.encode(message, SECRET)
            seeds += [datagram, b"S" + datagram[5:-32]]
        _seeds.write(corpus, seeds)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
