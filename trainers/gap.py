"""Modality-gap metrics on paired embeddings (definitions: DESIGN.md section 2).

Modality a is the first tower, b the second; row i of both is one matched pair. Inputs are
L2-normalised first and every sum is accumulated in float64.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    return t.to(device="cpu", dtype=torch.float64)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _cone_cosine(x: torch.Tensor) -> float:
    # Mean cosine over pairs i != j of unit vectors: (||sum x||^2 - N) / (N (N - 1)); O(N d).
    n = x.shape[0]
    if n < 2:
        return float("nan")
    s = x.sum(dim=0)
    return float((s.dot(s) - n) / (n * (n - 1)))


def gap_metrics(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """The O(N·d) gap metrics of two paired embedding sets of shape (N, d)."""
    x, y = _normalise(_as_float64(a)), _normalise(_as_float64(b))
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    gap = mean_x - mean_y
    paired_cos = (x * y).sum(dim=1)
    diff_norm_sq = (x - y).pow(2).sum(dim=1)
    cone_a, cone_b = _cone_cosine(x), _cone_cosine(y)
    centroid_cos = float(mean_x.dot(mean_y) / (mean_x.norm() * mean_y.norm()).clamp_min(1e-12))
    return {
        "gap_norm": float(gap.norm()),
        "centroid_cosine": centroid_cos,
        "paired_cosine": float(paired_cos.mean()),
        "paired_distance": float(diff_norm_sq.sqrt().mean()),
        "rmg": _relative_modality_gap(float(paired_cos.mean()), cone_a, cone_b),
        "cone_cosine_a": cone_a,
        "cone_cosine_b": cone_b,
        "alignment": float(diff_norm_sq.mean()),
    }


def _relative_modality_gap(paired_cos: float, cone_a: float, cone_b: float) -> float:
    def dist(mean_cos: float) -> float:
        return 1.0 - (mean_cos + 1.0) / 2.0

    d_m, d_a, d_b = dist(paired_cos), dist(cone_a), dist(cone_b)
    denom = d_m + (d_a + d_b) / 2.0
    return d_m / denom if denom > 0 else 0.0
