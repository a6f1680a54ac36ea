"""The gap shift's gain measured held out: λ chosen on one half of the eval pairs, the gain
scored on the other half with a bootstrap interval. Checked against a NumPy re-computation."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.evaluate_shift import heldout_shift, shift_summary, shift_table

LAMBDAS = (-0.4, -0.2, 0.0, 0.2, 0.4)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def embeddings(seed: int, noise: float) -> dict[str, np.ndarray]:
    """Ten classes on the sphere; images and their prompts on either side of a gap."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(10, 16)))
    gap = np.zeros(16)
    gap[0] = 0.8
    labels = rng.integers(0, 10, 300)
    a = unit(centres[labels] + gap + noise * rng.normal(size=(300, 16)))
    b = unit(centres[labels] - gap + noise * rng.normal(size=(300, 16)))
    class_b = unit(centres - gap + 0.3 * rng.normal(size=(10, 16)))
    return {"a": a, "b": b, "labels": labels, "class_b": class_b}


def numpy_heldout(arrays: dict[str, np.ndarray]) -> tuple[float, float]:
    """The chosen λ and the test gain, written out without the trainer's helpers."""
    a, b, labels, prompts = arrays["a"], arrays["b"], arrays["labels"], arrays["class_b"]
    order = np.random.default_rng(0).permutation(len(labels))
    val, test = order[: len(order) // 2], order[len(order) // 2 :]
    g = a[val].mean(axis=0) - b[val].mean(axis=0)
    g /= np.linalg.norm(g)

    def accuracy(rows: np.ndarray, lam: float) -> np.ndarray:
        images = unit(a[rows] - lam / 2 * g)
        moved = unit(prompts + lam / 2 * g)
        return np.argmax(images @ moved.T, axis=1) == labels[rows]

    best = max(LAMBDAS, key=lambda lam: (accuracy(val, lam).mean(), -abs(lam)))
    return best, float(accuracy(test, best).mean() - accuracy(test, 0.0).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heldout_gain_is_what_numpy_computes(seed: int) -> None:
    arrays = embeddings(seed, noise=0.9)
    got = heldout_shift(arrays, LAMBDAS)
    lam, gain = numpy_heldout(arrays)
    assert got["shift_heldout_lambda"] == lam
    assert got["shift_heldout_gain"] == pytest.approx(gain, abs=1e-12)
    assert got["shift_heldout_gain_low"] <= gain <= got["shift_heldout_gain_high"]


def test_in_sample_gain_is_never_negative_but_the_heldout_one_can_be() -> None:
    # Noise labels: no λ helps, yet choosing on the scored pairs always "gains" something.
    arrays = embeddings(3, noise=0.9)
    gains = []
    for seed in range(6):
        arrays["labels"] = np.random.default_rng(seed).integers(0, 10, 300)
        rows = shift_table(arrays, LAMBDAS, temperature=0.01)
        assert shift_summary(rows)["shift_zero_shot_gain"] >= 0.0
        held = heldout_shift(arrays, LAMBDAS)
        assert held["shift_heldout_gain_low"] <= 0.0 <= held["shift_heldout_gain_high"]
        gains.append(held["shift_heldout_gain"])
    assert min(gains) <= 0.0


def test_without_prompts_the_shift_counts_class_means_and_says_so() -> None:
    # paired_features with labels: no prompts, so each class's mean caption stands in and the
    # names say centroid, never zero-shot.
    arrays = embeddings(4, noise=0.6)
    del arrays["class_b"]
    a, b, labels = arrays["a"], arrays["b"], arrays["labels"]
    rows = shift_table(arrays, LAMBDAS, temperature=0.01)
    means = np.stack([b[labels == k].mean(axis=0) for k in range(10)])
    g = unit(a.mean(axis=0) - b.mean(axis=0))
    for row, lam in zip(rows, LAMBDAS, strict=True):
        assert "zero_shot_acc" not in row
        nearest = np.argmax(unit(a - lam / 2 * g) @ unit(means + lam / 2 * g).T, axis=1)
        assert row["centroid_acc"] == pytest.approx(float(np.mean(nearest == labels)), abs=1e-12)
    summary = shift_summary(rows)
    assert set(summary) == {"shift_best_lambda", "shift_best_centroid_acc", "shift_centroid_gain"}
    held = heldout_shift(arrays, LAMBDAS)
    assert "shift_heldout_centroid_acc" in held
    assert not [name for name in held if "zero_shot" in name]
