"""Codec micro-benchmark: CPU time of ``Codec.encode`` and ``Codec.decode`` per message.

Run: ``python bench/codec.py [--repeat N] [--number M] [--json]``

Every remote message is encoded once by its sender and decoded once by its receiver,
so these are the codec's share of a one-way ``send``.  Each figure is the best of
``--repeat`` runs of ``--number`` calls, in CPU time of this process
(``time.process_time``), in microseconds per call: the best run is the one least
disturbed by whatever else shares the machine.

The messages are shaped like the peer session's (a kind, ids, a payload):

* ``send small``: a one-way send of a short str (the usual case: cbor2's native
  encoder, no hooks);
* ``send 4KiB``: a one-way send of 4 KiB of bytes;
* ``deliver dict``: a request with a small dict payload;
* ``ref + tuple``: a payload with a tuple and a task reference (the hooked encoder);
* ``monitor status``: a ``MonitorStatus`` whose value is an exception;
* ``registered``: an instance of a registered dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `triopycos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triopycos import Location, MonitorStatus, register_type
from triopycos.protocol.codec import Codec, Ref


@dataclasses.dataclass
class Order:
    item: str
    quantity: int


register_type(Order, "bench.Order")

_REF = Ref("task", b"\x01" * 16, 7, "worker", Location("127.0.0.1", 9706))


def _messages() -> dict[str, object]:
    try:
        raise ValueError("boom", 3)
    except ValueError as exc:
        error = exc
    return {
        "send small": [1, 7, "hello"],
        "send 4KiB": [1, 7, b"x" * 4096],
        "deliver dict": [2, 5, 7, {"a": 1, "b": [1.5, None, "x"], "c": "text"}],
        "ref + tuple": [1, 7, ("job", 3, _REF)],
        "monitor status": [15, 7, MonitorStatus(_REF, ValueError, error)],
        "registered": [1, 7, Order("apple", 3)],
    }


def _best(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Best CPU time of ``number`` calls of ``fn``, in µs per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, time.process_time() - start)
    return best / number * 1e6


def measure(repeat: int, number: int) -> dict[str, float]:
    codec = Codec(resolve_ref=lambda ref: ref)
    results: dict[str, float] = {}
    for name, message in _messages().items():
        data = codec.encode(message)
        results[f"{name}: encode"] = _best(partial(codec.encode, message), repeat, number)
        results[f"{name}: decode"] = _best(partial(codec.decode, data), repeat, number)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure (best kept)")
    parser.add_argument("--number", type=int, default=20000, help="calls per run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = measure(args.repeat, args.number)
    if args.json:
        print(json.dumps(results))
        return
    width = max(map(len, results))
    for name, micros in results.items():
        print(f"{name:<{width}}  {micros:7.3f} µs")


if __name__ == "__main__":
    main()
