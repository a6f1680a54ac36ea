"""Every benchmark runs once at a tiny size, so that none of them can rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gap_metrics_benchmark_tiny() -> None:
    out = run_benchmark("benchmarks.gap_metrics", "--size", "20000", "--repeat", "1")
    assert "stream" in out and "read_sum" in out


def test_results_store_benchmark_tiny() -> None:
    out = run_benchmark(
        "benchmarks.results_store", "--trials", "100", "--steps", "5", "--repeats", "1"
    )
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["backend"] for r in records] == ["sqlite", "postgresql"]
    assert all(r["metric_rows"] == 100 * 5 * 5 for r in records)
