"""Smoke tests of the benchmarks of issue 21 (bench/peers.py, bench/latency.py, the
bare-trio floor of bench/memory.py): each runs once with its smallest sizes, over
127.0.0.1 only, and must produce every figure with nothing failed.  The figures
themselves are not checked (they depend on the machine)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import latency, memory, peers
from bench._common import make_tls_files

DEADLINE = 30.0


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 1001)]
    assert latency.percentile(ordered, 0.5) == 500.0
    assert latency.percentile(ordered, 0.99) == 990.0
    assert latency.percentile(ordered, 0.999) == 999.0
    assert latency.percentile(ordered, 1.0) == 1000.0
    assert latency.percentile([7.0], 0.999) == 7.0
    assert math.isnan(latency.percentile([], 0.5))


def _check_peers(data: dict[str, float]) -> None:
    for mode in peers.MODES:
        for metric in peers.METRICS:
            assert data[f"{mode}.{metric.key}"] > 0, (mode, metric.key, data)
            assert data[f"{mode}.{metric.key}.failed"] == 0, (mode, metric.key, data)


@pytest.mark.parametrize("system", ["triopycos", "raw"])
def test_peers_plain_and_tls(system: str, tmp_path: Path) -> None:
    tls = make_tls_files(str(tmp_path))
    _check_peers(peers.run_round(system, quick=True, deadline=DEADLINE, tls=tls))


def test_peers_pyro5(tmp_path: Path) -> None:
    tls = make_tls_files(str(tmp_path))
    _check_peers(peers.run_round("pyro5", quick=True, deadline=DEADLINE, tls=tls))


def test_latency_under_load(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x5a" * (1 << 20))
    data = latency.run_round(
        "triopycos", quick=True, deadline=DEADLINE, payload=str(payload), dest_root=str(tmp_path)
    )
    for case in latency.CASES:
        assert data[f"{case}.failed"] == 0, (case, data)
        assert data[f"{case}.n"] > 0, (case, data)
        values = [data[f"{case}.{key}"] for key, _, _ in latency.PERCENTILES]
        assert values == sorted(values), (case, values)
    assert data["stream.rate"] > 0
    assert data["files.transfers"] >= 1


@pytest.mark.parametrize("mode", ["receive", "suspend", "own", "scoped"])
def test_bare_trio_idle_tasks(mode: str) -> None:
    data = memory.raw_idle(200, mode)
    assert set(data) >= {memory.MODE_KEYS[mode]}
