"""Seeding trio's scheduler, so that a run can be repeated task step by task step.

Trio runs the tasks that are ready in a batch, in an order it randomises with a
module-level ``random.Random`` (``trio._core._run._r``) that nobody seeds.  With
``_ALLOW_DETERMINISTIC_SCHEDULING`` set (the Hypothesis plugin sets it), it first
sorts each batch by task creation order and then shuffles it with that RNG; seeding
the RNG makes the whole schedule a function of the seed.  Both names are trio
internals (present in trio 0.25 to 0.35 at least), so this module checks they exist
and says so clearly when a trio upgrade removes them.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deterministic_scheduling"]

_FLAG = "_ALLOW_DETERMINISTIC_SCHEDULING"


@contextmanager
def deterministic_scheduling(seed: int = 0) -> Iterator[None]:
    """Within the block, trio picks among ready tasks in an order fixed by ``seed``.

    Use it inside a trio run (the virtual network does it for you unless given
    ``seed_scheduler=False``).  Leaving the block restores trio's previous setting and
    RNG state.  Blocks may nest; each re-seeds.
    """
    run = importlib.import_module("trio._core._run")
    rng = getattr(run, "_r", None)
    if not isinstance(rng, random.Random) or not hasattr(run, _FLAG):
        raise RuntimeError(
            "this trio version's scheduler cannot be seeded (trio._core._run._r / "
            f"{_FLAG} are gone); use VirtualNetwork(seed_scheduler=False)"
        )
    old_flag = getattr(run, _FLAG)
    old_state = rng.getstate()
    setattr(run, _FLAG, True)
    rng.seed(seed)
    try:
        yield
    finally:
        setattr(run, _FLAG, old_flag)
        rng.setstate(old_state)
