"""The O(N·d) gap metrics in one streaming pass over paired chunks.

`GapAccumulator` keeps only float64 running sums (two d-vectors and two scalars), so it runs on
inputs far larger than memory (a memory-mapped .npy read chunk by chunk) and on the trainer's
small in-memory eval batches alike: both go through `update`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import numpy.typing as npt

from trainers.errors import DataError

if TYPE_CHECKING:
    import torch

ArrayLike: TypeAlias = "np.ndarray | torch.Tensor"
F64 = npt.NDArray[np.float64]

STREAMING_METRICS: tuple[str, ...] = (
    "gap_norm",
    "centroid_cosine",
    "paired_cosine",
    "paired_distance",
    "rmg",
    "cone_cosine_a",
    "cone_cosine_b",
    "alignment",
)

# About 1 MiB of float64 per modality and block: a block stays in the CPU cache while it is
# normalised and summed, and the Python loop overhead stays small next to the arithmetic
# (benchmarks/gap_metrics.py measures the block sizes).
_CHUNK_ELEMENTS = 1 << 17
_SQRT2 = float(np.sqrt(2.0))


def default_chunk_rows(dim: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(dim, 1))


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A NumPy view of `x` (no copy for arrays and memory maps); tensors go to CPU float64."""
    # A tensor exists only if torch was imported; not importing it keeps `analyze` quick to start.
    torch_module = sys.modules.get("torch")
    if torch_module is not None and isinstance(x, torch_module.Tensor):
        # bf16 and CUDA tensors have no NumPy view; float64 keeps every later sum exact enough.
        array: np.ndarray = x.detach().to(device="cpu", dtype=torch_module.float64).numpy()
        return array
    return np.asarray(x)


def row_norms(x: F64) -> F64:
    norms: F64 = np.sqrt(np.vecdot(x, x))
    return norms


def check_norms(norms: F64, name: str, first_row: int) -> list[str]:
    """Problems with rows that cannot be L2-normalised (non-finite values, zero vectors)."""
    problems = []
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        problems.append(
            f"modality {name}: {bad.size} row(s) hold NaN or infinite values "
            f"(first: row {first_row + int(bad[0])})"
        )
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        problems.append(
            f"modality {name}: {zero.size} row(s) are all-zero vectors, which have no direction "
            f"(first: row {first_row + int(zero[0])})"
        )
    return problems


def normalised(x: ArrayLike, name: str = "a") -> F64:
    """Rows of `x` scaled to unit length, in a new float64 array; DataError for unusable rows."""
    out = np.array(as_numpy(x), dtype=np.float64)
    if out.ndim != 2:
        raise DataError(f"modality {name}: expected shape (N, d), got {out.shape}")
    norms = row_norms(out)
    problems = check_norms(norms, name, 0)
    if problems:
        raise DataError("\n".join(problems))
    out /= norms[:, None]
    return out


class GapAccumulator:
    """Running float64 sums over matched chunks; `result()` gives the O(N·d) metrics."""

    def __init__(self, dim: int, names: tuple[str, str] = ("a", "b")) -> None:
        self.dim = dim
        self.names = names
        self.count = 0
        self._sums = np.zeros((2, dim))  # sum of the unit rows of a and of b
        self._sum_cos = 0.0
        self._sum_dist = 0.0
        self._block_rows = default_chunk_rows(dim)
        # Both modalities' float64 copies in one buffer, so one call gets both rows' norms.
        self._buf = np.empty((2, self._block_rows, dim))

    def update(self, a: ArrayLike, b: ArrayLike) -> None:
        """Add matched rows `a[i]` and `b[i]` (shape (n, d) each, any real dtype)."""
        a_np, b_np = as_numpy(a), as_numpy(b)
        if a_np.ndim != 2 or a_np.shape != b_np.shape or a_np.shape[1] != self.dim:
            raise DataError(
                f"expected two chunks of shape (n, {self.dim}), got {a_np.shape} and {b_np.shape}"
            )
        # Work in cache-sized blocks whatever chunk the caller reads, so each block is read from
        # memory once and its later passes hit the cache (and OpenBLAS starts no threads).
        for rows in iter_chunks(a_np.shape[0], self._block_rows):
            self._update_block(a_np[rows], b_np[rows])

    def _update_block(self, a: np.ndarray, b: np.ndarray) -> None:
        n = a.shape[0]
        # Copy into the reused float64 buffer: a memory-mapped input is read once, page by page,
        # and the process's own memory stays at one block however large the input is.
        z = self._buf[:, :n]
        np.copyto(z[0], a, casting="unsafe")
        np.copyto(z[1], b, casting="unsafe")
        sq_norms = np.vecdot(z, z)
        # Two reductions catch NaN, inf and zero rows; the row-by-row report only runs on failure.
        if not (sq_norms.min() > 0.0 and np.isfinite(sq_norms.sum())):
            self._raise_bad_rows(np.sqrt(sq_norms))
        inv = np.sqrt(sq_norms)
        np.reciprocal(inv, out=inv)
        # Weighted column sums sum_i x_i / |x_i| as matrix-vector products: no normalised copy.
        self._sums[0] += inv[0] @ z[0]
        self._sums[1] += inv[1] @ z[1]
        cos = np.vecdot(z[0], z[1])
        cos *= inv[0]
        cos *= inv[1]
        self._sum_cos += float(cos.sum())
        # On the unit sphere |x - y| = sqrt(2 - 2 cos); the clamp absorbs rounding below zero.
        half_sq = np.subtract(1.0, cos, out=cos)
        np.maximum(half_sq, 0.0, out=half_sq)
        self._sum_dist += _SQRT2 * float(np.sqrt(half_sq, out=half_sq).sum())
        self.count += n

    def _raise_bad_rows(self, norms: F64) -> None:
        problems = check_norms(norms[0], self.names[0], self.count)
        problems += check_norms(norms[1], self.names[1], self.count)
        raise DataError("\n".join(problems))

    @property
    def centroid_a(self) -> F64:
        """Mean of the normalised rows of modality a."""
        centroid: F64 = self._sums[0] / self._require_rows()
        return centroid

    @property
    def centroid_b(self) -> F64:
        centroid: F64 = self._sums[1] / self._require_rows()
        return centroid

    def _require_rows(self) -> int:
        if self.count == 0:
            raise DataError("no pairs: the inputs hold zero rows")
        return self.count

    def result(self) -> dict[str, float]:
        n = self._require_rows()
        mean_a, mean_b = self.centroid_a, self.centroid_b
        paired_cos = self._sum_cos / n
        cone_a, cone_b = _cone_cosine(self._sums[0], n), _cone_cosine(self._sums[1], n)
        return {
            "gap_norm": float(np.linalg.norm(mean_a - mean_b)),
            "centroid_cosine": _cosine(mean_a, mean_b),
            "paired_cosine": paired_cos,
            "paired_distance": self._sum_dist / n,
            "rmg": relative_modality_gap(paired_cos, cone_a, cone_b),
            "cone_cosine_a": cone_a,
            "cone_cosine_b": cone_b,
            # Mean squared distance of unit vectors, exactly 2 - 2 * mean cosine.
            "alignment": 2.0 - 2.0 * paired_cos,
        }


def _cosine(u: F64, v: F64) -> float:
    denom = float(np.linalg.norm(u) * np.linalg.norm(v))
    # Centroids at the origin have no direction; 0 says "no alignment" without a NaN.
    return float(u @ v) / denom if denom > 0 else 0.0


def _cone_cosine(total: F64, n: int) -> float:
    # Mean cosine over ordered pairs i != j of unit vectors: (|sum x|^2 - N) / (N (N - 1)).
    if n < 2:
        return float("nan")
    return (float(total @ total) - n) / (n * (n - 1))


def relative_modality_gap(paired_cos: float, cone_a: float, cone_b: float) -> float:
    """RMG (Schrodi et al. 2025): d_m / (d_m + (d_a + d_b) / 2) with d = 1 - (cos + 1) / 2."""

    def dist(mean_cos: float) -> float:
        return 1.0 - (mean_cos + 1.0) / 2.0

    d_m, d_a, d_b = dist(paired_cos), dist(cone_a), dist(cone_b)
    denom = d_m + (d_a + d_b) / 2.0
    if math.isnan(denom):
        return math.nan  # one pair has no within-modality distance
    return d_m / denom if denom > 0 else 0.0


def iter_chunks(n: int, chunk_rows: int) -> Iterator[slice]:
    for start in range(0, n, chunk_rows):
        yield slice(start, min(start + chunk_rows, n))


def stream_gap_metrics(
    a: ArrayLike,
    b: ArrayLike,
    *,
    chunk_rows: int | None = None,
    names: tuple[str, str] = ("a", "b"),
) -> GapAccumulator:
    """One pass over matched rows of `a` and `b` (arrays, memory maps or tensors of shape (N, d)).

    Returns the filled accumulator: `.result()` gives the metrics and `.centroid_a/_b` the
    centroids that the gap-shift direction needs. `chunk_rows` is how many rows are read at once.
    """
    if a.ndim != 2 or b.ndim != 2 or tuple(a.shape) != tuple(b.shape):
        raise DataError(
            f"expected two arrays of the same shape (N, d), got {a.shape} and {b.shape}"
        )
    # Plain views of memory maps: slicing an np.memmap runs Python code on every chunk.
    a = np.asarray(a) if isinstance(a, np.ndarray) else a
    b = np.asarray(b) if isinstance(b, np.ndarray) else b
    n, dim = int(a.shape[0]), int(a.shape[1])
    acc = GapAccumulator(dim, names)
    for rows in iter_chunks(n, chunk_rows or default_chunk_rows(dim)):
        acc.update(a[rows], b[rows])
    return acc
