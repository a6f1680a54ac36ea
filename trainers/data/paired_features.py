"""The `paired_features` data set: the user's own paired vectors from .npy/.npz files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from trainers.config import PairedFeaturesDataConfig
from trainers.data.paired import InputSpec, PairedData, PairedSplit, held_out_order
from trainers.errors import DataError


def make_paired_features(config: PairedFeaturesDataConfig, seed: int) -> PairedData:
    a, b, labels = read_pairs(Path(config.path))
    n = a.shape[0]
    n_train = n - config.n_eval if config.n_train is None else config.n_train
    if n_train < 2 or n_train + config.n_eval > n:
        raise DataError(
            f"{config.path}: {n} pairs cannot give n_train {n_train} and n_eval {config.n_eval}"
        )
    order = held_out_order(n, seed)
    train_idx, eval_idx = order[:n_train], order[n - config.n_eval :]

    def split(idx: np.ndarray) -> PairedSplit:
        return PairedSplit(
            a=torch.from_numpy(a[idx]),
            b=torch.from_numpy(b[idx]),
            match_ids=torch.from_numpy(idx.astype(np.int64)),
            labels=None if labels is None else torch.from_numpy(labels[idx]),
        )

    return PairedData(
        train=split(train_idx),
        eval=split(eval_idx),
        a_input=InputSpec("vector", (a.shape[1],)),
        b_input=InputSpec("vector", (b.shape[1],)),
    )


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(a, b, labels) from a (2, N, d) .npy, or an .npz of arrays a, b and optionally labels."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npy/.npz file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if loaded.ndim != 3 or loaded.shape[0] != 2:
            raise DataError(f"{path}: a .npy needs shape (2, N, d), got {loaded.shape}")
        a, b, labels = loaded[0], loaded[1], None
    else:
        with loaded:
            missing = {"a", "b"} - set(loaded.files)
            if missing:
                raise DataError(f"{path}: the .npz lacks array(s) {', '.join(sorted(missing))}")
            a, b = loaded["a"], loaded["b"]
            labels = loaded["labels"] if "labels" in loaded.files else None
    return _checked(path, a, "a"), _checked(path, b, "b"), _checked_labels(path, labels, len(a))


def _checked(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path}: {name} must be a non-empty (N, d) array, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: {name} holds {x.dtype}, not numbers")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise DataError(f"{path}: {name} has non-finite values (first in row {bad})")
    return np.ascontiguousarray(x, dtype=np.float32)


def _checked_labels(path: Path, labels: np.ndarray | None, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.shape != (n,):
        raise DataError(f"{path}: labels must have shape ({n},), got {labels.shape}")
    _, index = np.unique(labels, return_inverse=True)
    return index.astype(np.int64)
