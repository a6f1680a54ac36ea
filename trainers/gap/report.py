"""Every modality-gap metric of one pair of embedding sets (definitions: docs/architecture.md).

Modality a is the first tower, b the second; row i of both is one matched pair. Inputs are
L2-normalised first and every sum is accumulated in float64. The trainer and `orchestrator
analyze` both measure through this module:

- `gap_metrics(a, b)`: the O(N·d) metrics, cheap enough for every eval step.
- `gap_report(a, b, ...)`: every metric and the gap shift curve; the O(N·d) ones in one
  streaming pass (memory maps larger than RAM are fine), the rest on all pairs up to
  `max_pairs` and on a seeded sample beyond, which the report records.
- `procrustes_rotation(source, target)`: the rotation that closes the gap at init.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainers.errors import DataError
from trainers.gap.intervals import bootstrap_intervals
from trainers.gap.landscape import LandscapeCurve, loss_landscape
from trainers.gap.pairwise import linear_separability, pc1_variance_ratio, within_modality
from trainers.gap.shift import (
    DEFAULT_LAMBDAS,
    DEFAULT_TEMPERATURE,
    ShiftPoint,
    gap_direction,
    shift_curve,
)
from trainers.gap.shift import procrustes_rotation as _procrustes
from trainers.gap.stream import (
    STREAMING_METRICS,
    ArrayLike,
    as_numpy,
    normalised,
    stream_gap_metrics,
)

# Metrics that need all pairs, a dxd matrix or a fitted classifier: exact up to this many
# pairs (the paper's 5,000 MSCOCO pairs), a seeded sample of this size beyond.
DEFAULT_MAX_PAIRS = 5000
SAMPLED_METRICS: tuple[str, ...] = (
    "cone_min_cosine_a",
    "cone_min_cosine_b",
    "linear_separability",
    "uniformity_a",
    "uniformity_b",
    "pc1_variance_ratio",
)
# What `analyze` reports: every streaming metric, then every sampled one.
METRIC_NAMES: tuple[str, ...] = (*STREAMING_METRICS, *SAMPLED_METRICS)


@dataclass(frozen=True)
class GapReport:
    """Every gap metric of one pair of embedding sets, and how it was computed."""

    metrics: dict[str, float]
    shift: tuple[ShiftPoint, ...]
    n_pairs: int
    dim: int
    sample_size: int  # pairs behind SAMPLED_METRICS and the shift curve
    centroid_a: npt.NDArray[np.float64]
    centroid_b: npt.NDArray[np.float64]
    landscape: tuple[LandscapeCurve, ...] = ()  # one curve per temperature, when asked for
    intervals: dict[str, tuple[float, float]] | None = None  # bootstrap 95 %, over the sample

    @property
    def sampled(self) -> bool:
        return self.sample_size < self.n_pairs

    def to_json_dict(self) -> dict[str, Any]:
        """Exactly the metric names, then `shift`, `intervals` (bootstrap 95 % intervals of the
        means) and, when asked for, `landscape`: the vocabulary of trainers/reports.py."""
        out: dict[str, Any] = {name: self.metrics[name] for name in METRIC_NAMES}
        out["shift"] = [point.to_dict() for point in self.shift]
        if self.intervals:
            out["intervals"] = {name: list(bounds) for name, bounds in self.intervals.items()}
        if self.landscape:
            out["landscape"] = [curve.to_dict() for curve in self.landscape]
        return out


def gap_metrics(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """The O(N·d) gap metrics (STREAMING_METRICS) of two paired sets of shape (N, d)."""
    return stream_gap_metrics(a, b).result()


def sample_indices(n: int, max_pairs: int, seed: int) -> npt.NDArray[np.intp] | None:
    """Sorted seeded sample of `max_pairs` of `n` pair indices, or None to use them all."""
    if n <= max_pairs:
        return None
    picked = np.random.default_rng(seed).choice(n, size=max_pairs, replace=False)
    return np.sort(picked)  # sorted: a memory-mapped file is then read front to back


def gap_report(
    a: ArrayLike,
    b: ArrayLike,
    *,
    labels: npt.NDArray[np.generic] | None = None,
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
    temperature: float = DEFAULT_TEMPERATURE,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = 0,
    names: tuple[str, str] = ("a", "b"),
    chunk_rows: int | None = None,
    landscape_temperatures: tuple[float, ...] = (),
    prompts: npt.NDArray[np.float64] | None = None,
    direction: npt.NDArray[np.float64] | None = None,
) -> GapReport:
    """Every metric of METRIC_NAMES and the shift curve over `lambdas`.

    `a` and `b` may be memory maps larger than RAM. `labels` (one class per pair) add the
    nearest-centroid accuracy to the shift curve, `prompts` (row k: class k's prompt, on b's
    side) CLIP's zero-shot accuracy; `direction` shifts along another data set's gap. The
    sample (when N > max_pairs) is drawn with `seed`, which also fixes the train/test split of
    `linear_separability`.
    """
    if max_pairs < 2:
        raise DataError(f"max_pairs must be at least 2, got {max_pairs}")
    if labels is not None and len(labels) != a.shape[0]:
        raise DataError(f"{len(labels)} labels for {a.shape[0]} pairs; need one label per pair")
    acc = stream_gap_metrics(a, b, chunk_rows=chunk_rows, names=names)
    if acc.count < 2:
        raise DataError(f"need at least 2 pairs, got {acc.count}")
    picked = sample_indices(acc.count, max_pairs, seed)
    x, y, sample_labels = _analysis_set(a, b, labels, picked, names)
    metrics = acc.result() | _sampled_metrics(x, y, seed)
    if direction is None:
        direction = gap_direction(acc.centroid_a, acc.centroid_b)
    unit_prompts = None if prompts is None else normalised(as_numpy(prompts), "class prompts")
    curve = shift_curve(
        x,
        y,
        lambdas=lambdas,
        temperature=temperature,
        direction=direction,
        labels=sample_labels,
        prompts=unit_prompts,
    )
    landscape = loss_landscape(x, y, lambdas, landscape_temperatures, direction)
    intervals = bootstrap_intervals(x, y, seed)
    return GapReport(
        metrics={name: metrics[name] for name in METRIC_NAMES},
        shift=curve,
        n_pairs=acc.count,
        dim=acc.dim,
        sample_size=x.shape[0],
        centroid_a=acc.centroid_a,
        centroid_b=acc.centroid_b,
        landscape=landscape,
        intervals=intervals,
    )


def _analysis_set(
    a: ArrayLike,
    b: ArrayLike,
    labels: npt.NDArray[np.generic] | None,
    picked: npt.NDArray[np.intp] | None,
    names: tuple[str, str],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.generic] | None]:
    a_np, b_np = as_numpy(a), as_numpy(b)
    if picked is None:
        return normalised(a_np, names[0]), normalised(b_np, names[1]), labels
    sample_labels = None if labels is None else np.asarray(labels)[picked]
    return normalised(a_np[picked], names[0]), normalised(b_np[picked], names[1]), sample_labels


def _sampled_metrics(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], seed: int
) -> dict[str, float]:
    min_a, uniformity_a = within_modality(x)
    min_b, uniformity_b = within_modality(y)
    return {
        "cone_min_cosine_a": min_a,
        "cone_min_cosine_b": min_b,
        "linear_separability": linear_separability(x, y, seed=seed),
        "uniformity_a": uniformity_a,
        "uniformity_b": uniformity_b,
        "pc1_variance_ratio": pc1_variance_ratio(x, y),
    }


def procrustes_rotation(
    source: ArrayLike, target: ArrayLike, *, proper: bool = False
) -> npt.NDArray[np.float64]:
    """Orthogonal dxd R with normalised(source)·R ≈ normalised(target), pair by pair.

    To close the gap at init, take R = procrustes_rotation(b, a) and use b·R (for a final
    Linear layer with weight W of shape (out, in): W ← Rᵀ·W). `proper=True` excludes
    reflections.
    """
    return _procrustes(normalised(source, "source"), normalised(target, "target"), proper=proper)
