"""Synthetic paired embeddings with a modality gap, written to disk in chunks for the benchmarks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
# Room left on the disk after writing the file, so a benchmark never fills it up.
_SPARE_BYTES = 6 << 30


def data_path(size: int, dim: int) -> Path:
    return DATA_DIR / f"pairs_{size}x{dim}_float32.npy"


def ensure_pairs_file(size: int, dim: int, *, seed: int = 0, chunk_rows: int = 65_536) -> Path:
    """Write a (2, size, dim) float32 .npy once (chunk by chunk) and return its path."""
    path = data_path(size, dim)
    if path.exists():
        return path
    needed = 2 * size * dim * 4 + _SPARE_BYTES
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(DATA_DIR).free
    if free < needed:
        raise SystemExit(
            f"need {needed / 2**30:.1f} GiB free in {DATA_DIR}, have {free / 2**30:.1f}"
        )
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(2, size, dim))
    rng = np.random.default_rng(seed)
    # Two offset cones sharing a latent: a real gap, paired rows correlated, not identical.
    offset_a = rng.standard_normal(dim).astype(np.float32)
    offset_b = rng.standard_normal(dim).astype(np.float32)
    for start in range(0, size, chunk_rows):
        rows = min(chunk_rows, size - start)
        latent = rng.standard_normal((rows, dim), dtype=np.float32)
        out[0, start : start + rows] = latent + offset_a
        noise = rng.standard_normal((rows, dim), dtype=np.float32)
        out[1, start : start + rows] = latent + 0.5 * noise + offset_b
    out.flush()
    del out
    partial.rename(path)
    return path
