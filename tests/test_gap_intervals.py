"""Bootstrap intervals over pairs in `analyze`'s JSON, checked against a plain loop over the
same resamples, and covering the point estimate."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_gap_metrics import made_pairs
from trainers.gap import gap_report
from trainers.gap.intervals import bootstrap_intervals


def loop_intervals(x: np.ndarray, y: np.ndarray, seed: int, resamples: int) -> dict[str, tuple]:
    draws = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    values: dict[str, list[float]] = {}
    for idx in draws:
        a, b = x[idx], y[idx]
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        n = len(a)
        gram_a, gram_b = a @ a.T, b @ b.T
        found = {
            "gap_norm": np.linalg.norm(ca - cb),
            "centroid_cosine": ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb)),
            "paired_cosine": np.mean(np.sum(a * b, axis=1)),
            "paired_distance": np.mean(np.linalg.norm(a - b, axis=1)),
            "alignment": np.mean(np.sum((a - b) ** 2, axis=1)),
            "cone_cosine_a": (gram_a.sum() - np.trace(gram_a)) / (n * (n - 1)),
            "cone_cosine_b": (gram_b.sum() - np.trace(gram_b)) / (n * (n - 1)),
        }
        for name, value in found.items():
            values.setdefault(name, []).append(float(value))
    return {k: (np.percentile(v, 2.5), np.percentile(v, 97.5)) for k, v in values.items()}


def test_intervals_are_the_loops() -> None:
    a, b = made_pairs(0.6, n=120, d=16)
    got = bootstrap_intervals(a, b, seed=3, resamples=200)
    expected = loop_intervals(a, b, seed=3, resamples=200)
    assert set(got) == set(expected)
    for name, (low, high) in expected.items():
        assert got[name] == pytest.approx((low, high), rel=1e-9, abs=1e-12), name


def test_the_report_carries_intervals_around_its_estimates() -> None:
    a, b = made_pairs(0.6, n=400, d=32)
    report = gap_report(a, b)
    assert report.intervals is not None
    for name, (low, high) in report.intervals.items():
        assert low <= report.metrics[name] <= high, name
        assert high - low < 0.2, name
    assert report.to_json_dict()["intervals"]["gap_norm"] == list(report.intervals["gap_norm"])
