"""The O(N·d) gap metrics in one streaming pass over paired chunks.

`GapAccumulator` keeps only float64 running sums (two d-vectors and two scalars), so it runs on
inputs far larger than memory (a memory-mapped .npy read chunk by chunk) and on the trainer's
small in-memory eval batches alike: both go through `update`.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import torch

from trainers.errors import DataError

ArrayLike = np.ndarray | torch.Tensor
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

# About 2 MiB of float64 per modality and chunk: both chunks stay in the CPU cache while they
# are normalised and summed, and the Python loop overhead stays small next to the arithmetic.
_CHUNK_ELEMENTS = 1 << 18


def default_chunk_rows(dim: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(dim, 1))


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A NumPy view of `x` (no copy for arrays and memory maps); tensors go to CPU float64."""
    if isinstance(x, torch.Tensor):
        # bf16 and CUDA tensors have no NumPy view; float64 keeps every later sum exact enough.
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x)


def row_norms(x: F64) -> F64:
    return np.sqrt(np.vecdot(x, x))


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

    def __init__(self, dim: int, names: tuple[str, str] = ("a", "b"), first_row: int = 0) -> None:
        self.dim = dim
        self.names = names
        self.count = 0
        self._first_row = first_row  # where this accumulator's rows start, for error messages
        self._sum_a = np.zeros(dim)
        self._sum_b = np.zeros(dim)
        self._sum_cos = 0.0
        self._sum_dist = 0.0
        self._block_rows = default_chunk_rows(dim)
        self._buf_a = np.empty((self._block_rows, dim))
        self._buf_b = np.empty((self._block_rows, dim))

    def update(self, a: ArrayLike, b: ArrayLike) -> None:
        """Add matched rows `a[i]` and `b[i]` (shape (n, d) each, any real dtype)."""
        a_np, b_np = as_numpy(a), as_numpy(b)
        if a_np.ndim != 2 or a_np.shape != b_np.shape or a_np.shape[1] != self.dim:
            raise DataError(
                f"expected two chunks of shape (n, {self.dim}), got {a_np.shape} and {b_np.shape}"
            )
        # Work in cache-sized blocks whatever chunk the caller reads: larger matrix-vector
        # products make OpenBLAS start threads that cost more than the arithmetic they share.
        for rows in iter_chunks(a_np.shape[0], self._block_rows):
            self._update_block(a_np[rows], b_np[rows])

    def _update_block(self, a: np.ndarray, b: np.ndarray) -> None:
        n = a.shape[0]
        # Copy into reused float64 buffers: reading a memory map touches each page once and the
        # process's own memory stays at one block however large the input is.
        x, y = self._buf_a[:n], self._buf_b[:n]
        np.copyto(x, a, casting="unsafe")
        np.copyto(y, b, casting="unsafe")
        norm_a, norm_b = row_norms(x), row_norms(y)
        row = self._first_row + self.count
        problems = check_norms(norm_a, self.names[0], row) + check_norms(norm_b, self.names[1], row)
        if problems:
            raise DataError("\n".join(problems))
        inv_a, inv_b = 1.0 / norm_a, 1.0 / norm_b
        # Weighted column sums sum_i x_i / |x_i| as one matrix-vector product: no normalised copy.
        self._sum_a += inv_a @ x
        self._sum_b += inv_b @ y
        cos = np.vecdot(x, y) * inv_a * inv_b
        self._sum_cos += float(cos.sum())
        # On the unit sphere |x - y|^2 = 2 - 2 cos; the clamp absorbs rounding below zero.
        self._sum_dist += float(np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0)).sum())
        self.count += n

    def merge(self, other: GapAccumulator) -> None:
        """Add the sums of an accumulator that saw other rows (another thread's share)."""
        if other.dim != self.dim:
            raise DataError(f"cannot merge sums of dimension {other.dim} into {self.dim}")
        self._sum_a += other._sum_a
        self._sum_b += other._sum_b
        self._sum_cos += other._sum_cos
        self._sum_dist += other._sum_dist
        self.count += other.count

    @property
    def centroid_a(self) -> F64:
        """Mean of the normalised rows of modality a."""
        return self._sum_a / self._require_rows()

    @property
    def centroid_b(self) -> F64:
        return self._sum_b / self._require_rows()

    def _require_rows(self) -> int:
        if self.count == 0:
            raise DataError("no pairs: the inputs hold zero rows")
        return self.count

    def result(self) -> dict[str, float]:
        n = self._require_rows()
        mean_a, mean_b = self.centroid_a, self.centroid_b
        paired_cos = self._sum_cos / n
        cone_a, cone_b = _cone_cosine(self._sum_a, n), _cone_cosine(self._sum_b, n)
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
    workers: int | None = None,
) -> GapAccumulator:
    """One pass over matched rows of `a` and `b` (arrays, memory maps or tensors of shape (N, d)).

    Returns the filled accumulator: `.result()` gives the metrics and `.centroid_a/_b` the
    centroids that the gap-shift direction needs. `workers` threads (default: up to 4, one per
    core) each take a contiguous share of the rows; NumPy releases the GIL in its loops.
    """
    if a.ndim != 2 or b.ndim != 2 or tuple(a.shape) != tuple(b.shape):
        raise DataError(f"expected two arrays of the same shape (N, d), got {a.shape} and {b.shape}")
    n, dim = int(a.shape[0]), int(a.shape[1])
    step = chunk_rows or default_chunk_rows(dim)
    shares = _split_rows(n, step, workers or min(4, os.cpu_count() or 1))
    accs = [GapAccumulator(dim, names, first_row=share.start) for share in shares]
    if len(shares) == 1:
        _consume(accs[0], a, b, shares[0], step, threading.Event())
        return accs[0]
    stop = threading.Event()
    with ThreadPoolExecutor(len(shares)) as pool:
        futures = [
            pool.submit(_consume, acc, a, b, share, step, stop)
            for acc, share in zip(accs, shares, strict=True)
        ]
        for future in futures:
            future.result()
    total = GapAccumulator(dim, names)
    for acc in accs:
        total.merge(acc)
    return total


def _split_rows(n: int, step: int, workers: int) -> list[slice]:
    # Threads only pay off when each gets several chunks; small inputs stay on one thread.
    count = max(1, min(workers, n // (4 * step)))
    bounds = [n * k // count for k in range(count + 1)]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def _consume(
    acc: GapAccumulator, a: ArrayLike, b: ArrayLike, share: slice, step: int, stop: threading.Event
) -> None:
    try:
        for start in range(share.start, share.stop, step):
            if stop.is_set():
                return
            rows = slice(start, min(start + step, share.stop))
            acc.update(a[rows], b[rows])
    except BaseException:
        stop.set()  # the other threads need not read to the end of a file that is unusable
        raise
