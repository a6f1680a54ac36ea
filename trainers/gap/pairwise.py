"""Gap metrics that need more than running sums: all pairs within a modality, PCA, a classifier.

Every function takes rows that are already L2-normalised float64 (see `stream.normalised`)
and that fit in memory: callers pass all pairs up to a size and a seeded sample beyond it.
Pairs are visited in row blocks, so memory stays at one block of similarities, never NxN.
"""

from __future__ import annotations

import math
import warnings
from contextlib import AbstractContextManager

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]

from trainers.errors import DataError

F64 = npt.NDArray[np.float64]

# Entries of one block of similarities (16 MiB of float64) and a few temporaries the same size.
_BLOCK_ELEMENTS = 1 << 21
# Fahim et al. (2024) train the modality classifier on 20% of the data and test on the rest.
TRAIN_FRACTION = 0.2


def block_rows(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(n_cols, 1))


def within_modality(x: F64) -> tuple[float, float]:
    """(minimum cosine, uniformity) over the pairs i < j of unit rows `x`.

    Uniformity (Wang & Isola 2020) is log mean exp(-2 |u - v|^2); on the unit sphere
    |u - v|^2 = 2 - 2 cos, so each block of cosines gives both numbers.
    """
    n = x.shape[0]
    if n < 2:
        raise DataError(f"need at least 2 rows for pairwise metrics, got {n}")
    lowest, exp_sum = math.inf, 0.0
    step = block_rows(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        # Rows start:stop against themselves (upper triangle only) and against every later row.
        square = x[start:stop] @ x[start:stop].T
        upper = square[np.triu_indices(stop - start, k=1)]
        rest = x[start:stop] @ x[stop:].T
        for cos in (upper, rest.ravel()):
            if cos.size:
                lowest = min(lowest, float(cos.min()))
                exp_sum += float(np.exp(4.0 * cos - 4.0).sum())
    pairs = n * (n - 1) / 2
    return lowest, math.log(exp_sum / pairs)


def pc1_variance_ratio(x: F64, y: F64) -> float:
    """Share of the variance of both modalities together that lies on the first principal axis."""
    z = np.concatenate([x, y])
    centred = z - z.mean(axis=0)
    scatter = centred.T @ centred  # dxd: O(N·d²) time and dxd memory, whatever N is
    with one_blas_thread():
        eigenvalues = np.linalg.eigvalsh(scatter)
    total = float(eigenvalues.sum())
    return float(eigenvalues[-1]) / total if total > 0 else float("nan")


def principal_axes(z: F64, k: int) -> F64:
    """The first `k` principal axes (unit columns, d x k) of the rows of `z` about their mean."""
    centred = z - z.mean(axis=0)
    with one_blas_thread():
        _, vectors = np.linalg.eigh(centred.T @ centred)
    axes: F64 = vectors[:, ::-1][:, :k]  # eigh sorts ascending
    return axes


def one_blas_thread() -> AbstractContextManager[object]:
    """Run small dense linear algebra (dxd eigenproblems, SVDs) on one BLAS thread.

    They are small enough for one thread, and OpenBLAS's threads slow them down many times over
    whenever the other cores are busy (benchmarks/README.md, gap metrics).
    """
    limits: AbstractContextManager[object] = threadpool_limits(1, user_api="blas")
    return limits


def split_pairs(
    n: int, seed: int, train_fraction: float = TRAIN_FRACTION
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Train and test pair indices: a seeded permutation, `train_fraction` of pairs to train.

    Splitting pairs (both rows of a pair on the same side) keeps the two classes exactly
    balanced on each side, a stratified split, and makes the result symmetric in a and b.
    """
    if n < 2:
        raise DataError(f"need at least 2 pairs to split into train and test, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = min(n - 1, max(1, round(train_fraction * n)))
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def linear_separability(x: F64, y: F64, *, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression telling modality a (0) from b (1)."""
    # Imported here: scikit-learn takes seconds to import and most callers never get here.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train, test = split_pairs(x.shape[0], seed)

    def rows(idx: npt.NDArray[np.intp]) -> tuple[F64, npt.NDArray[np.int64]]:
        labels = np.repeat(np.array([0, 1], dtype=np.int64), idx.size)
        return np.concatenate([x[idx], y[idx]]), labels

    features, labels = rows(train)
    model = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        # Separable modalities drive the weights up until max_iter; the accuracy is still right.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    test_features, test_labels = rows(test)
    return float(model.score(test_features, test_labels))
