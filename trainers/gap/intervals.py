"""Bootstrap intervals over pairs for the gap metrics that are means over pairs or functions of
the two centroids: each resample draws N pairs with replacement, and the interval is the 2.5th
to 97.5th percentile of the metric over the resamples. Each resample is one row of counts, so
every centroid is one matrix product (no per-resample Python loop over the data)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

RESAMPLES = 1000
INTERVAL_METRICS = (
    "gap_norm",
    "centroid_cosine",
    "paired_cosine",
    "paired_distance",
    "alignment",
    "cone_cosine_a",
    "cone_cosine_b",
)


def bootstrap_intervals(
    x: F64, y: F64, seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, tuple[float, float]]:
    """95 % intervals of INTERVAL_METRICS for unit rows `x`, `y` (matched pairs)."""
    n = x.shape[0]
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    weights = np.stack([np.bincount(row, minlength=n) for row in draws]) / n  # (B, N)
    ca, cb = weights @ x, weights @ y
    norm_a, norm_b = np.linalg.norm(ca, axis=1), np.linalg.norm(cb, axis=1)
    distance = np.linalg.norm(x - y, axis=1)
    values = {
        "gap_norm": np.linalg.norm(ca - cb, axis=1),
        "centroid_cosine": (ca * cb).sum(axis=1) / np.maximum(norm_a * norm_b, 1e-12),
        "paired_cosine": weights @ (x * y).sum(axis=1),
        "paired_distance": weights @ distance,
        "alignment": weights @ distance**2,
        # mean cosine over pairs i != j of n unit rows: (n^2 |c|^2 - n) / (n (n - 1))
        "cone_cosine_a": (n * norm_a**2 - 1) / (n - 1),
        "cone_cosine_b": (n * norm_b**2 - 1) / (n - 1),
    }
    return {
        name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
        for name, v in values.items()
    }
