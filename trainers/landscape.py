"""The `landscape` trainer: the paper's Figure 3 simulations, loss versus modality gap.

Fixed image points on the unit sphere and their text points, shifted along the gap direction (the
z axis): text_i(λ) = normalise(base_s(i) + λ·e_z). In the `equator` and `rings` layouts the texts
start on their images (base = image) and s swaps a pair when `mismatched`; on the equator a shift
by λ is a rotation to latitude atan(λ). In `mirrored_ring` (Supp. Fig. 9) the texts start on the
mirror image of the image ring (base = image with z negated), so λ = 0 is a gap of twice the
ring's height and λ = 2·height closes it; `mismatched` there moves one pair next to another.
For each λ the symmetric InfoNCE loss at the trial's temperature and the gap
‖mean(image) - mean(text)‖ are reported (the step is the shift's index); the last report adds
where the loss is lowest, and whether that is the last λ of the range (`min_at_edge`: the true
minimum may lie further out).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from trainers.config.landscape import LandscapeConfig

F64 = npt.NDArray[np.float64]
Report = Callable[[int, dict[str, float]], None]

# The swapped pairs of the paper's two simulations.
SWAPS = {"equator": (0, 1), "rings": (3, 8)}
# mirrored_ring's moved pair: the last one, placed this far from the first.
MOVED_PAIR_DEGREES = 10.0


def image_points(config: LandscapeConfig) -> F64:
    """(n, 3) unit vectors of the image points."""
    if config.layout == "equator":
        angles = np.radians(20.0 * np.arange(6))
        return np.stack([np.cos(angles), np.sin(angles), np.zeros(6)], axis=1)
    z = config.ring_height
    radius = math.sqrt(1.0 - z**2)
    angles = 2.0 * math.pi * np.arange(9) / 9.0
    if config.layout == "mirrored_ring":
        if config.mismatched:
            angles[-1] = math.radians(MOVED_PAIR_DEGREES)
        heights = np.full(9, z)
    else:
        heights = np.where(np.arange(9) % 2 == 0, z, -z)  # alternate between the two rings
    return np.stack([radius * np.cos(angles), radius * np.sin(angles), heights], axis=1)


def text_points(images: F64, config: LandscapeConfig, lam: float) -> F64:
    if config.layout == "mirrored_ring":
        base = images * np.array([1.0, 1.0, -1.0])
    else:
        order = np.arange(len(images))
        if config.mismatched:
            i, j = SWAPS[config.layout]
            order[[i, j]] = order[[j, i]]
        base = images[order]
    moved = base + lam * np.array([0.0, 0.0, 1.0])
    normalised: F64 = moved / np.linalg.norm(moved, axis=1, keepdims=True)
    return normalised


def contrastive_loss(x: F64, y: F64, temperature: float) -> float:
    """Symmetric InfoNCE over all pairs, in float64 (logits up to 1/tau = 1000)."""
    logits = x @ y.T / temperature

    def cross_entropy(z: F64) -> float:
        top = z.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))).ravel()
        return float(np.mean(lse - np.diag(z)))

    return (cross_entropy(logits) + cross_entropy(logits.T)) / 2.0


def landscape_curve(config: LandscapeConfig) -> list[dict[str, float]]:
    images = image_points(config)
    rows = []
    for lam in np.linspace(0.0, config.max_shift, config.shifts):
        texts = text_points(images, config, float(lam))
        gap = float(np.linalg.norm(images.mean(axis=0) - texts.mean(axis=0)))
        loss = contrastive_loss(images, texts, config.temperature)
        rows.append({"shift": float(lam), "gap_norm": gap, "loss": loss})
    return rows


def run_landscape(config: LandscapeConfig, report: Report) -> dict[str, float]:
    """Report the curve point by point; the last report and the result add the minimum."""
    rows = landscape_curve(config)
    lowest = min(r["loss"] for r in rows)
    # The smallest shift within rounding of the lowest loss: at low temperature the loss of
    # matched points is ~0 for a range of gaps, and that flat bottom starts at zero gap.
    best = next(r for r in rows if r["loss"] <= lowest + 1e-9 * max(1.0, abs(lowest)))
    summary = {
        "temperature": config.temperature,
        "min_loss": best["loss"],
        "min_loss_gap": best["gap_norm"],
        "min_loss_shift": best["shift"],
        "min_at_edge": float(best is rows[-1]),
    }
    for step, row in enumerate(rows):
        last = step == len(rows) - 1
        report(step, {**row, "temperature": config.temperature} | (summary if last else {}))
    return {**rows[-1], **summary}
