"""Every gap metric on the paper's released embeddings, against a direct NumPy computation.

The direct versions build the full NxN matrices (N <= 500 here) that the module avoids, so they
check the identities and the blockwise code rather than repeat them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy.linalg import orthogonal_procrustes  # type: ignore[import-untyped]
from scipy.spatial.distance import pdist  # type: ignore[import-untyped]
from scipy.special import logsumexp  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression

from trainers.gap import (
    METRIC_NAMES,
    GapReport,
    gap_direction,
    gap_metrics,
    gap_report,
    procrustes_rotation,
)

F64 = npt.NDArray[np.float64]
MODELS = ("clip", "convirt", "videoclip", "clasp")
FEATURE_FILES = [f"features_{m}{suffix}.npy" for m in MODELS for suffix in ("", "_random")]
# Made by the test, so that every metric keeps its independent reference where the paper's
# features are not at hand: two narrow cones apart (a gap), and one cone for both (none).
MADE = {"made_cones": 0.6, "made_one_cone": 0.0}


def features_dir() -> Path:
    """The paper's released features, where $GAPSWEEP_FEATURES_DIR names them (.ci/run does)."""
    configured = os.environ.get("GAPSWEEP_FEATURES_DIR")
    if not configured:
        pytest.skip(
            "the paper's released features: set GAPSWEEP_FEATURES_DIR to their folder "
            "(modality-gap-features; .ci/run sets it)"
        )
    return Path(configured)


def load_features(name: str) -> tuple[F64, F64]:
    if name in MADE:
        return made_pairs(MADE[name])
    path = features_dir() / name
    if not path.exists():
        pytest.skip(f"real embeddings not found at {path} (GAPSWEEP_FEATURES_DIR)")
    stacked = np.load(path)
    return stacked[0], stacked[1]


def made_pairs(offset: float, n: int = 1500, d: int = 64) -> tuple[F64, F64]:
    """Unit pairs in narrow cones about centres `offset` apart, each pair sharing a signal,
    with a spectrum that falls off as learned embeddings' do."""
    rng = np.random.default_rng(7)
    scales = 1.0 / np.arange(1, d + 1)
    shared = rng.normal(size=(n, d)) * scales
    centre = np.zeros(d)
    centre[0] = 3.0
    shift = np.zeros(d)
    shift[1] = 3.0 * offset
    a = centre + shift + shared + 0.3 * rng.normal(size=(n, d)) * scales
    b = centre - shift + shared + 0.3 * rng.normal(size=(n, d)) * scales
    return unit(a), unit(b)


def unit(rows: npt.NDArray[np.floating]) -> F64:
    rows64 = rows.astype(np.float64)
    normalised: F64 = rows64 / np.linalg.norm(rows64, axis=1, keepdims=True)
    return normalised


def direct_metrics(a: F64, b: F64, seed: int = 0) -> dict[str, float]:
    x, y = unit(a), unit(b)
    n = x.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    gram_a, gram_b = x @ x.T, y @ y.T
    cone_a, cone_b = gram_a[off_diagonal].mean(), gram_b[off_diagonal].mean()
    paired_cos = float(np.sum(x * y, axis=1).mean())

    def dist(mean_cos: float) -> float:
        return 1 - (mean_cos + 1) / 2

    d_m = dist(paired_cos)
    mean_a, mean_b = x.mean(axis=0), y.mean(axis=0)
    both = np.concatenate([x, y])
    singular = np.linalg.svd(both - both.mean(axis=0), compute_uv=False)
    return {
        "gap_norm": float(np.linalg.norm(mean_a - mean_b)),
        "centroid_cosine": float(
            mean_a @ mean_b / (np.linalg.norm(mean_a) * np.linalg.norm(mean_b))
        ),
        "paired_cosine": paired_cos,
        "paired_distance": float(np.linalg.norm(x - y, axis=1).mean()),
        "rmg": d_m / (d_m + (dist(cone_a) + dist(cone_b)) / 2),
        "cone_cosine_a": float(cone_a),
        "cone_cosine_b": float(cone_b),
        "cone_min_cosine_a": float(gram_a[off_diagonal].min()),
        "cone_min_cosine_b": float(gram_b[off_diagonal].min()),
        "linear_separability": direct_separability(x, y, seed),
        "alignment": float(np.sum((x - y) ** 2, axis=1).mean()),
        "uniformity_a": float(np.log(np.exp(-2 * pdist(x, "sqeuclidean")).mean())),
        "uniformity_b": float(np.log(np.exp(-2 * pdist(y, "sqeuclidean")).mean())),
        "pc1_variance_ratio": float(singular[0] ** 2 / np.sum(singular**2)),
    }


def direct_separability(x: F64, y: F64, seed: int) -> float:
    # The documented split: a seeded permutation of pairs, round(20%) of them to train.
    order = np.random.default_rng(seed).permutation(x.shape[0])
    train, test = order[: round(0.2 * x.shape[0])], order[round(0.2 * x.shape[0]) :]
    model = LogisticRegression(max_iter=1000)
    model.fit(np.concatenate([x[train], y[train]]), [0] * len(train) + [1] * len(train))
    return float(model.score(np.concatenate([x[test], y[test]]), [0] * len(test) + [1] * len(test)))


@pytest.fixture(scope="module", params=[*MADE, *FEATURE_FILES])
def features(request: pytest.FixtureRequest) -> tuple[str, F64, F64, GapReport]:
    a, b = load_features(request.param)
    return request.param, a, b, gap_report(a, b, lambdas=(-0.5, 0.0, 0.5))


def test_every_metric_matches_a_direct_computation(
    features: tuple[str, F64, F64, GapReport],
) -> None:
    name, a, b, report = features
    expected = direct_metrics(a, b)
    assert set(report.metrics) == set(METRIC_NAMES)
    for metric in METRIC_NAMES:
        assert report.metrics[metric] == pytest.approx(expected[metric], rel=1e-9, abs=1e-9), (
            f"{name}: {metric}"
        )
    assert not report.sampled


def test_trainer_metrics_are_the_streaming_subset(
    features: tuple[str, F64, F64, GapReport],
) -> None:
    _, a, b, report = features
    quick = gap_metrics(a, b)
    assert {
        "gap_norm",
        "centroid_cosine",
        "paired_cosine",
        "paired_distance",
        "rmg",
        "cone_cosine_a",
        "cone_cosine_b",
        "alignment",
    } <= set(quick)
    for metric, value in quick.items():
        assert value == pytest.approx(report.metrics[metric], rel=1e-12, abs=1e-12)


def test_clip_gap_is_near_the_papers_value() -> None:
    a, b = load_features("features_clip.npy")
    metrics = gap_metrics(a, b)
    # The paper: 0.82 on 5,000 MSCOCO pairs; these are 500 of them.
    assert metrics["gap_norm"] == pytest.approx(0.82, abs=0.05)


@pytest.mark.parametrize("name", [f"features_{m}.npy" for m in MODELS])
def test_pretrained_modalities_are_linearly_separable(name: str) -> None:
    a, b = load_features(name)
    assert gap_report(a, b, lambdas=(0.0,)).metrics["linear_separability"] >= 0.99


def direct_shift_point(
    x: F64, y: F64, lam: float, temperature: float, labels: npt.NDArray[np.int64]
) -> dict[str, float]:
    g = x.mean(axis=0) - y.mean(axis=0)
    g /= np.linalg.norm(g)
    xs, ys = unit(x - lam / 2 * g), unit(y + lam / 2 * g)
    logits = xs @ ys.T / temperature
    diag = np.diag(logits)
    loss = 0.5 * (
        np.mean(logsumexp(logits, axis=1) - diag) + np.mean(logsumexp(logits, axis=0) - diag)
    )
    index = np.arange(x.shape[0])
    classes = np.unique(labels)
    prototypes = unit(np.stack([ys[labels == c].mean(axis=0) for c in classes]))
    predicted = classes[np.argmax(xs @ prototypes.T, axis=1)]
    return {
        "lambda": lam,
        "gap_norm": float(np.linalg.norm(xs.mean(axis=0) - ys.mean(axis=0))),
        "loss": float(loss),
        "recall_at_1_a2b": float(np.mean(np.argmax(logits, axis=1) == index)),
        "recall_at_1_b2a": float(np.mean(np.argmax(logits, axis=0) == index)),
        "centroid_acc": float(np.mean(predicted == labels)),  # nearest class mean, no prompts
    }


@pytest.mark.parametrize(
    "name", ["made_cones", "features_clip.npy", "features_videoclip_random.npy"]
)
@pytest.mark.parametrize("temperature", [0.001, 0.01, 0.5])
def test_shift_curve_matches_a_direct_computation(name: str, temperature: float) -> None:
    a, b = load_features(name)
    labels = np.arange(a.shape[0]) % 7
    lambdas = (-1.0, -0.25, 0.0, 0.4, 1.0)
    report = gap_report(a, b, labels=labels, lambdas=lambdas, temperature=temperature)
    x, y = unit(a), unit(b)
    for point, lam in zip(report.shift, lambdas, strict=True):
        expected = direct_shift_point(x, y, lam, temperature, labels)
        got = point.to_dict()
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), f"λ={lam}: {key}"


def test_shift_at_zero_is_the_unshifted_geometry() -> None:
    a, b = load_features("features_clip.npy")
    report = gap_report(a, b, lambdas=(0.0,))
    assert report.shift[0].gap_norm == pytest.approx(report.metrics["gap_norm"], rel=1e-12)


def test_procrustes_matches_scipy_on_full_rank_data() -> None:
    # With N >= d the optimal rotation is unique, so the matrices themselves must agree.
    rng = np.random.default_rng(7)
    a = rng.standard_normal((300, 16))
    b = a @ np.linalg.qr(rng.standard_normal((16, 16)))[0] + 0.1 * rng.standard_normal((300, 16))
    expected, _ = orthogonal_procrustes(unit(b), unit(a))
    np.testing.assert_allclose(procrustes_rotation(b, a), expected, atol=1e-9)


def test_procrustes_is_optimal_and_closes_the_clip_gap() -> None:
    a, b = load_features("features_clip.npy")
    x, y = unit(a), unit(b)
    rotation = procrustes_rotation(b, a)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(a.shape[1]), atol=1e-9)
    # 500 pairs in 512-d: many rotations are optimal, so compare the residual, not the matrix.
    expected, _ = orthogonal_procrustes(y, x)
    residual = np.linalg.norm(y @ rotation - x)
    assert residual == pytest.approx(np.linalg.norm(y @ expected - x), rel=1e-9)
    before = gap_metrics(a, b)["gap_norm"]
    after = gap_metrics(a, y @ rotation)["gap_norm"]
    assert before > 0.8
    assert after < 0.2 * before


def test_proper_procrustes_is_a_rotation_no_better_than_the_free_one() -> None:
    a, b = load_features("features_clasp.npy")
    x, y = unit(a), unit(b)
    free, proper = procrustes_rotation(y, x), procrustes_rotation(y, x, proper=True)
    assert np.linalg.det(proper) == pytest.approx(1.0, abs=1e-9)
    residual_free = np.linalg.norm(y @ free - x)
    residual_proper = np.linalg.norm(y @ proper - x)
    assert residual_proper >= residual_free - 1e-9


def test_gap_direction_points_from_b_to_a() -> None:
    a, b = load_features("features_clip.npy")
    x, y = unit(a), unit(b)
    g = gap_direction(x.mean(axis=0), y.mean(axis=0))
    assert np.linalg.norm(g) == pytest.approx(1.0)
    assert (x.mean(axis=0) - y.mean(axis=0)) @ g == pytest.approx(gap_metrics(a, b)["gap_norm"])
