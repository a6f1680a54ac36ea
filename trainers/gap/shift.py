"""Shifting the modality gap (Liang et al. 2022, Table 1) and closing it by a rotation.

The shift moves modality a by -λ/2·g and modality b by +λ/2·g, g the unit gap direction
(centroid a - centroid b), then renormalises: λ > 0 pulls the modalities together and λ < 0
pushes them apart. For each λ the curve holds the gap, the symmetric InfoNCE loss at a given
temperature, retrieval recall@1 both ways and, with class labels, zero-shot accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainers.errors import DataError
from trainers.gap.pairwise import one_blas_thread

F64 = npt.NDArray[np.float64]

DEFAULT_LAMBDAS: tuple[float, ...] = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
# CLIP's learned temperature ends near 1/100; the paper's shift table uses that model.
DEFAULT_TEMPERATURE = 0.01


@dataclass(frozen=True)
class ShiftPoint:
    """The gap shift curve at one λ. With class labels, `centroid_acc`: the share of rows of a
    whose nearest class mean of b (after the shift) is their class; with class prompts too,
    `zero_shot_acc`: the share whose nearest prompt is, CLIP's zero-shot. None without them."""

    lam: float
    gap_norm: float
    loss: float
    recall_at_1_a2b: float
    recall_at_1_b2a: float
    centroid_acc: float | None = None
    zero_shot_acc: float | None = None

    def to_dict(self) -> dict[str, float]:
        out = {
            "lambda": self.lam,
            "gap_norm": self.gap_norm,
            "loss": self.loss,
            "recall_at_1_a2b": self.recall_at_1_a2b,
            "recall_at_1_b2a": self.recall_at_1_b2a,
        }
        if self.centroid_acc is not None:
            out["centroid_acc"] = self.centroid_acc
        if self.zero_shot_acc is not None:
            out["zero_shot_acc"] = self.zero_shot_acc
        return out


def gap_direction(centroid_a: F64, centroid_b: F64) -> F64:
    """Unit vector from centroid b to centroid a; zero when the centroids coincide."""
    gap = np.asarray(centroid_a, dtype=np.float64) - np.asarray(centroid_b, dtype=np.float64)
    length = float(np.linalg.norm(gap))
    return gap / length if length > 0 else np.zeros_like(gap)


def shift_pairs(
    x: F64, y: F64, lam: float, direction: F64, *, renormalise: bool = True
) -> tuple[F64, F64]:
    """Unit rows `x`, `y` moved by -λ/2·direction and +λ/2·direction (then renormalised)."""
    step = 0.5 * lam * direction
    x_new, y_new = x - step, y + step
    if renormalise:
        for rows in (x_new, y_new):
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return x_new, y_new


def shift_curve(
    x: F64,
    y: F64,
    *,
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
    temperature: float = DEFAULT_TEMPERATURE,
    direction: F64 | None = None,
    labels: npt.NDArray[np.generic] | None = None,
    prompts: F64 | None = None,
) -> tuple[ShiftPoint, ...]:
    """The shift curve of matched unit rows `x`, `y` (shape (N, d)), one point per λ.

    `direction` defaults to the gap direction of `x` and `y` themselves; pass the one of the
    full data when `x`, `y` are a sample, or another data set's. `labels` (one class per pair)
    add `centroid_acc`, and `prompts` (unit rows, row k the prompt of class k, on b's side: they
    move with b) add `zero_shot_acc`; labels are then class numbers 0..K-1.
    """
    if temperature <= 0:
        raise DataError(f"temperature must be positive, got {temperature}")
    if labels is not None and len(labels) != x.shape[0]:
        raise DataError(f"{len(labels)} labels for {x.shape[0]} pairs; need one label per pair")
    g = gap_direction(x.mean(axis=0), y.mean(axis=0)) if direction is None else direction
    contrast = _contrast_all(x, y, g, lambdas, temperature)
    points = []
    for k, lam in enumerate(lambdas):
        x_new, y_new = shift_pairs(x, y, lam, g)
        centroid = None if labels is None else centroid_accuracy(x_new, y_new, labels)
        zero_shot = None
        if prompts is not None and labels is not None:
            _, moved = shift_pairs(prompts, prompts, lam, g)
            zero_shot = float(np.mean(np.argmax(x_new @ moved.T, axis=1) == labels))
        gap = float(np.linalg.norm(x_new.mean(axis=0) - y_new.mean(axis=0)))
        points.append(
            ShiftPoint(
                float(lam), gap, *contrast[k], centroid_acc=centroid, zero_shot_acc=zero_shot
            )
        )
    return tuple(points)


def centroid_accuracy(x: F64, y: F64, labels: npt.NDArray[np.generic]) -> float:
    """Share of rows of `x` whose nearest class prototype (mean of `y` per class) is their class:
    a nearest-centroid classifier, not zero-shot (no prompts)."""
    classes, index = np.unique(np.asarray(labels), return_inverse=True)
    prototypes = np.zeros((classes.size, y.shape[1]))
    np.add.at(prototypes, index, y)
    prototypes /= np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.argmax(x @ prototypes.T, axis=1) == index))


# Column sums smaller than this may have lost digits to underflow; they are summed again exactly.
_TINY = 1e-280


class _LambdaScores:
    """Row and column statistics of the shifted logits at one λ, filled block by block."""

    def __init__(self, lam: float, xg: F64, yg: F64, g_sq: float, temperature: float) -> None:
        t = 0.5 * lam
        self.row_offset = t * xg - t * t * g_sq
        self.col_offset = t * yg
        # 1 / (|x - t g| tau) and 1 / |y + t g|: unit x, y and g expand the squared norms.
        self.row_scale = 1.0 / (
            temperature * np.sqrt(np.maximum(1 - 2 * t * xg + t * t * g_sq, 1e-24))
        )
        self.col_scale = 1.0 / np.sqrt(np.maximum(1 + 2 * t * yg + t * t * g_sq, 1e-24))
        n = xg.shape[0]
        self.diag, self.row_max, self.row_lse = np.empty(n), np.empty(n), np.empty(n)
        self.col_max, self.col_lse = np.full(n, -np.inf), np.full(n, -np.inf)

    def add_block(self, rows: slice, cosines: F64, work: F64) -> None:
        """Fold in the rows `rows`; `cosines` is their x·yᵀ, `work` two scratch blocks like it."""
        logits = np.add(cosines, self.row_offset[rows, None], out=work[0])
        logits -= self.col_offset
        logits *= self.row_scale[rows, None]
        logits *= self.col_scale
        local = np.arange(rows.stop - rows.start)
        self.diag[rows] = logits[local, local + rows.start]
        row_max = logits.max(axis=1)
        self.row_max[rows] = row_max
        np.maximum(self.col_max, logits.max(axis=0), out=self.col_max)
        scaled = np.exp(np.subtract(logits, row_max[:, None], out=work[1]), out=work[1])
        self.row_lse[rows] = row_max + np.log(scaled.sum(axis=1))
        np.logaddexp(self.col_lse, _column_lse(logits, scaled, row_max), out=self.col_lse)

    def result(self) -> tuple[float, float, float]:
        """(symmetric InfoNCE loss, recall@1 a->b, recall@1 b->a)."""
        loss = 0.5 * float(np.mean(self.row_lse - self.diag) + np.mean(self.col_lse - self.diag))
        # A pair counts as retrieved when no other candidate scores strictly higher.
        recall_a2b = float(np.mean(self.diag >= self.row_max))
        recall_b2a = float(np.mean(self.diag >= self.col_max))
        return loss, recall_a2b, recall_b2a


def _column_lse(logits: F64, scaled: F64, row_max: F64) -> F64:
    """Log-sum-exp down each column of `logits`, reusing scaled = exp(logits - row_max).

    sum_i exp(l_ij - m) = sum_i exp(row_max_i - m) · scaled_ij: one matrix-vector product
    instead of a second exponential of the block.
    """
    top = float(row_max.max())
    sums = np.exp(row_max - top) @ scaled
    lost = sums < _TINY  # a column far below the block's best row (only at tiny temperatures)
    with np.errstate(divide="ignore"):
        lse: F64 = top + np.log(sums)
    if lost.any():
        part = logits[:, lost]
        peak = part.max(axis=0)
        lse[lost] = peak + np.log(np.exp(part - peak).sum(axis=0))
    return lse


def _contrast_all(
    x: F64, y: F64, g: F64, lambdas: tuple[float, ...], temperature: float
) -> list[tuple[float, float, float]]:
    """(loss, recall a->b, recall b->a) for each λ, from one pass of x·yᵀ blocks.

    With t = λ/2 and unit g, the shifted cosine is
    (x·y + t x·g - t y·g - t²) / (|x - t g| |y + t g|), so each block of x·yᵀ serves every λ
    and a λ costs O(N²) elementwise work instead of another O(N²·d) product.
    """
    n = x.shape[0]
    xg, yg = x @ g, y @ g
    g_sq = float(g @ g)  # 1, or 0 when there is no gap to shift along
    scores = [_LambdaScores(lam, xg, yg, g_sq, temperature) for lam in lambdas]
    # Blocks of about 2 MiB: the block and its two scratch copies stay in the CPU cache.
    step = max(1, (1 << 18) // n)
    work = np.empty((2, step, n))
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        cosines = x[rows] @ y.T
        for score in scores:
            score.add_block(rows, cosines, work[:, : rows.stop - rows.start])
    return [score.result() for score in scores]


def procrustes_rotation(source: F64, target: F64, *, proper: bool = False) -> F64:
    """Orthogonal R (dxd) minimising |source·R - target| over matched rows (unit or not).

    R = U·Vᵀ from the SVD of sourceᵀ·target. Closing the gap at init: R from modality b onto a,
    then use b·R; for a final Linear layer (weight W, outxin) that is W ← Rᵀ·W. `proper=True`
    forbids reflections (det R = +1) at a slightly higher residual. With fewer pairs than
    dimensions many rotations are optimal; this returns one of them.
    """
    if source.shape != target.shape or source.ndim != 2:
        raise DataError(
            f"expected two arrays of the same shape (N, d), got {source.shape} and {target.shape}"
        )
    with one_blas_thread():
        u, _, vt = np.linalg.svd(source.T @ target)
    if proper and np.linalg.det(u @ vt) < 0:
        u[:, -1] = -u[:, -1]
    rotation: F64 = u @ vt
    return rotation
