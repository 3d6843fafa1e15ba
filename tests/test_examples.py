"""Every program in examples/ runs to its end (a process, on loopback, bounded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from procs import open_node_process

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
LIMIT = 30


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
async def test_example_runs(example: Path) -> None:
    async with open_node_process([str(example)], timeout=LIMIT) as proc:
        with trio.fail_after(LIMIT):
            assert await proc.wait() == 0, proc.describe()
    assert proc.stdout.strip(), "an example says what it did"
    assert proc.stderr == "", proc.describe()
