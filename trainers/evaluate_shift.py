"""The gap shift of the paper's Table 1 on a trained model: zero-shot accuracy (and per-group
accuracy) as images move by -λ/2·g and captions by +λ/2·g, g the unit gap direction.

On data without class prompts each class's mean caption embedding stands in for its prompt:
that is nearest-centroid accuracy, so the rows and metrics say `centroid_acc` there, never
`zero_shot_acc` (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trainers.gap.shift import gap_direction, shift_curve, shift_pairs

F64 = npt.NDArray[np.float64]


def shifted_accuracy(
    a: F64,
    b: F64,
    class_b: F64,
    labels: npt.NDArray[np.int64],
    lam: float,
    class_of: npt.NDArray[np.int64] | None = None,
    direction: F64 | None = None,
) -> npt.NDArray[np.bool_]:
    """Per pair: is its image's nearest class prompt its class, after shifting the gap by λ?

    The class prompts live on tower b's side, so they move with the captions. `class_of` is
    the class of each row of `class_b` (a class's variants, trainers/evaluate.py); row k is
    class k without it. The gap direction is these pairs' own unless `direction` is given.
    """
    g = gap_direction(a.mean(axis=0), b.mean(axis=0)) if direction is None else direction
    a_new, _ = shift_pairs(a, a, lam, g)
    _, prompts = shift_pairs(class_b, class_b, lam, g)
    nearest = np.argmax(a_new @ prompts.T, axis=1)
    hits: npt.NDArray[np.bool_] = (nearest if class_of is None else class_of[nearest]) == labels
    return hits


def accuracy_name(arrays: dict[str, np.ndarray]) -> str:
    """What the shift's accuracy counts on these arrays: prompts, or class means without them."""
    return "zero_shot_acc" if arrays.get("class_b") is not None else "centroid_acc"


def shift_table(
    arrays: dict[str, np.ndarray], lambdas: tuple[float, ...], temperature: float
) -> list[dict[str, float]]:
    """One row per λ: lambda, gap_norm, loss, recall both ways, zero_shot_acc (centroid_acc
    without prompts), and with groups worst_group_acc and group_acc_spread. `arrays` as in
    checkpoint.EMBEDDINGS_FILE."""
    a, b = arrays["a"].astype(np.float64), arrays["b"].astype(np.float64)
    labels = arrays.get("labels")
    points = shift_curve(a, b, lambdas=lambdas, temperature=temperature)
    rows = [p.to_dict() for p in points]
    if labels is None:
        return rows
    class_b = arrays.get("class_b")
    if class_b is None:  # no prompts: each class's mean caption embedding stands in
        class_b = np.stack([b[labels == k].mean(axis=0) for k in range(int(labels.max()) + 1)])
    groups = arrays.get("groups")
    for row, lam in zip(rows, lambdas, strict=True):
        class_of = arrays.get("class_b_class")
        hits = shifted_accuracy(a, b, class_b.astype(np.float64), labels, lam, class_of)
        row[accuracy_name(arrays)] = float(hits.mean())
        if groups is not None:
            accs = [float(hits[groups == g].mean()) for g in np.unique(groups)]
            row["worst_group_acc"], row["group_acc_spread"] = min(accs), float(np.ptp(accs))
    return rows


def shift_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """The trial's final shift metrics: the best λ for the rows' accuracy and what it gains."""
    name = next((n for n in ("zero_shot_acc", "centroid_acc") if rows and n in rows[0]), None)
    if name is None:
        return {}
    at_zero = min(rows, key=lambda r: abs(r["lambda"]))
    best = max(rows, key=lambda r: (r[name], -abs(r["lambda"])))
    short = name.removesuffix("_acc")
    return {
        "shift_best_lambda": best["lambda"],
        f"shift_best_{name}": best[name],
        f"shift_{short}_gain": best[name] - at_zero[name],
    }


BOOTSTRAP_RESAMPLES = 1000


def heldout_shift(arrays: dict[str, np.ndarray], lambdas: tuple[float, ...]) -> dict[str, float]:
    """The shift's gain measured without choosing on the images it is scored on.

    The eval pairs are split in two at random (seed 0): on the validation half the gap direction
    is measured and the λ with the best zero-shot accuracy chosen; on the test half that λ's
    accuracy is compared with λ = 0, with a 95 % bootstrap interval over the test pairs.
    (`shift_summary` chooses and scores on all pairs: an upper bound, as the paper's table.)
    """
    labels = arrays.get("labels")
    if labels is None or len(labels) < 4 or not lambdas:
        return {}
    a, b = arrays["a"].astype(np.float64), arrays["b"].astype(np.float64)
    accuracy = accuracy_name(arrays)
    class_b = arrays.get("class_b")
    order = np.random.default_rng(0).permutation(len(labels))
    val, test = order[: len(order) // 2], order[len(order) // 2 :]
    if class_b is None:  # no prompts: class means of the validation captions stand in
        class_b = np.stack(
            [b[val][labels[val] == k].mean(axis=0) for k in range(int(labels.max()) + 1)]
        )
    g = gap_direction(a[val].mean(axis=0), b[val].mean(axis=0))
    class_of = arrays.get("class_b_class")

    def hits(rows: npt.NDArray[np.int64], lam: float) -> npt.NDArray[np.bool_]:
        return shifted_accuracy(
            a[rows], b[rows], class_b.astype(np.float64), labels[rows], lam, class_of, g
        )

    chosen = max(lambdas, key=lambda lam: (float(hits(val, lam).mean()), -abs(lam)))
    shifted = hits(test, chosen)
    gained = shifted.astype(np.float64) - hits(test, 0.0).astype(np.float64)
    draws = np.random.default_rng(1).integers(0, len(test), (BOOTSTRAP_RESAMPLES, len(test)))
    low, high = np.percentile(gained[draws].mean(axis=1), [2.5, 97.5])
    return {
        "shift_heldout_lambda": float(chosen),
        f"shift_heldout_{accuracy}": float(shifted.mean()),
        "shift_heldout_gain": float(gained.mean()),
        "shift_heldout_gain_low": float(low),
        "shift_heldout_gain_high": float(high),
    }
