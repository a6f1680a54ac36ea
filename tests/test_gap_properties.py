"""Properties the gap metrics must have whatever the data (hypothesis).

Hypothesis draws the shape, the seed and the geometry (how far apart the modalities sit, how
tightly pairs match); NumPy draws the rows from them, so rows are never exact duplicates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainers.gap import (
    METRIC_NAMES,
    GapReport,
    gap_direction,
    gap_metrics,
    gap_report,
    shift_curve,
    shift_pairs,
)
from trainers.gap.pairwise import split_pairs
from trainers.gap.stream import GapAccumulator, normalised

F64 = npt.NDArray[np.float64]
LAMBDAS = (-0.5, 0.0, 0.5)
SETTINGS = settings(max_examples=25, deadline=None, database=None)


@dataclass(frozen=True)
class Pairs:
    a: F64
    b: F64
    seed: int


@st.composite
def paired_embeddings(draw: st.DrawFn, min_rows: int = 5, max_rows: int = 40) -> Pairs:
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    offset = draw(st.floats(0.0, 3.0))
    noise = draw(st.floats(0.05, 2.0))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) + offset * rng.standard_normal(d)
    b = a + noise * rng.standard_normal((n, d)) + offset * rng.standard_normal(d)
    return Pairs(a, b, seed)


def report_of(a: F64, b: F64) -> GapReport:
    return gap_report(a, b, lambdas=LAMBDAS)


def test_split_keeps_both_sides_nonempty() -> None:
    for n in range(2, 30):
        train, test = split_pairs(n, seed=1)
        assert train.size >= 1 and test.size >= 1
        assert sorted([*train, *test]) == list(range(n))


def separability_tolerance(n: int) -> float:
    # The classifier's optimum is the same; its solver stops within a tolerance, which can move
    # a test point lying on the boundary. Allow one such point.
    _, test = split_pairs(n, seed=0)
    return 1.0 / (2 * test.size) + 1e-12


@SETTINGS
@given(paired_embeddings(), st.integers(0, 2**32 - 1))
def test_metrics_are_invariant_to_a_common_rotation(pairs: Pairs, rotation_seed: int) -> None:
    d = pairs.a.shape[1]
    q, _ = np.linalg.qr(np.random.default_rng(rotation_seed).standard_normal((d, d)))
    before, after = report_of(pairs.a, pairs.b), report_of(pairs.a @ q, pairs.b @ q)
    for name in METRIC_NAMES:
        if name == "linear_separability":
            tolerance = separability_tolerance(pairs.a.shape[0])
            assert abs(after.metrics[name] - before.metrics[name]) <= tolerance
        else:
            assert after.metrics[name] == pytest.approx(before.metrics[name], rel=1e-7, abs=1e-9)
    for p, r in zip(before.shift, after.shift, strict=True):
        assert r.gap_norm == pytest.approx(p.gap_norm, rel=1e-7, abs=1e-9)
        assert r.loss == pytest.approx(p.loss, rel=1e-7)


@SETTINGS
@given(paired_embeddings())
def test_identical_modalities_have_no_gap(pairs: Pairs) -> None:
    report = report_of(pairs.a, pairs.a.copy())
    metrics = report.metrics
    assert metrics["gap_norm"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["paired_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["paired_distance"] == pytest.approx(0.0, abs=1e-6)  # sqrt of rounding
    assert metrics["rmg"] == pytest.approx(0.0, abs=1e-12)
    # Every test row appears once per label and gets one prediction: exactly half are right.
    assert metrics["linear_separability"] == pytest.approx(0.5)
    for name in ("cone_cosine", "cone_min_cosine", "uniformity"):
        assert metrics[f"{name}_a"] == pytest.approx(metrics[f"{name}_b"], rel=1e-12)


def swapped(name: str) -> str:
    if name.endswith("_a"):
        return name[:-2] + "_b"
    if name.endswith("_b"):
        return name[:-2] + "_a"
    return name


@SETTINGS
@given(paired_embeddings())
def test_swapping_modalities_swaps_a_and_b_metrics(pairs: Pairs) -> None:
    forward, backward = report_of(pairs.a, pairs.b), report_of(pairs.b, pairs.a)
    for name in METRIC_NAMES:
        expected = forward.metrics[swapped(name)]
        if name == "linear_separability":
            tolerance = separability_tolerance(pairs.a.shape[0])
            assert abs(backward.metrics[name] - expected) <= tolerance
        else:
            assert backward.metrics[name] == pytest.approx(expected, rel=1e-9, abs=1e-12), name
    for p, r in zip(forward.shift, backward.shift, strict=True):
        assert r.gap_norm == pytest.approx(p.gap_norm, rel=1e-9, abs=1e-12)
        assert r.loss == pytest.approx(p.loss, rel=1e-9)
        assert (r.recall_at_1_a2b, r.recall_at_1_b2a) == (p.recall_at_1_b2a, p.recall_at_1_a2b)


@SETTINGS
@given(paired_embeddings(), st.floats(-2.0, 2.0))
def test_shift_without_renormalising_moves_the_gap_by_lambda(pairs: Pairs, lam: float) -> None:
    # Moving a by -λ/2·g and b by +λ/2·g subtracts λ·g from the gap Δ = |Δ|·g.
    x, y = normalised(pairs.a), normalised(pairs.b)
    gap = np.linalg.norm(x.mean(axis=0) - y.mean(axis=0))
    g = gap_direction(x.mean(axis=0), y.mean(axis=0))
    xs, ys = shift_pairs(x, y, lam, g, renormalise=False)
    assert np.linalg.norm(xs.mean(axis=0) - ys.mean(axis=0)) == pytest.approx(
        abs(gap - lam), abs=1e-9
    )


@SETTINGS
@given(paired_embeddings(), st.lists(st.integers(-30, 30), min_size=2, max_size=6, unique=True))
def test_renormalised_shift_closes_the_gap_along_g_monotonically(
    pairs: Pairs, tenths: list[int]
) -> None:
    # On the sphere each row's component along g is (x·g - t) / |x - t g| (t = λ/2), whose
    # derivative in t is (x·g² - 1) / |x - t g|³ < 0: the gap along g falls as λ grows.
    x, y = normalised(pairs.a), normalised(pairs.b)
    g = gap_direction(x.mean(axis=0), y.mean(axis=0))
    ordered = [k / 10 for k in sorted(tenths)]  # λ at least 0.1 apart: a visible change
    along = []
    for lam in ordered:
        xs, ys = shift_pairs(x, y, lam, g)
        along.append(float((xs.mean(axis=0) - ys.mean(axis=0)) @ g))
        assert gap_metrics(xs, ys)["gap_norm"] == pytest.approx(
            np.linalg.norm(xs.mean(axis=0) - ys.mean(axis=0)), rel=1e-9, abs=1e-12
        )
    assert all(later < earlier for earlier, later in itertools.pairwise(along))
    curve = shift_curve(x, y, lambdas=tuple(ordered), direction=g)
    for point, lam in zip(curve, ordered, strict=True):
        xs, ys = shift_pairs(x, y, lam, g)
        assert point.gap_norm == pytest.approx(gap_metrics(xs, ys)["gap_norm"], rel=1e-9, abs=1e-12)


@SETTINGS
@given(paired_embeddings(min_rows=2, max_rows=300), st.data())
def test_streaming_equals_in_memory(pairs: Pairs, data: st.DataObject) -> None:
    whole = GapAccumulator(pairs.a.shape[1])
    whole.update(pairs.a, pairs.b)
    streamed = GapAccumulator(pairs.a.shape[1])
    n, start = pairs.a.shape[0], 0
    while start < n:
        stop = start + data.draw(st.integers(1, n - start), label="chunk")
        streamed.update(pairs.a[start:stop], pairs.b[start:stop])
        start = stop
    assert streamed.count == whole.count == n
    expected = whole.result()
    for name, value in streamed.result().items():
        assert value == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
