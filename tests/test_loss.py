"""The contrastive loss and the temperature parameter against direct NumPy computations."""

from __future__ import annotations

import math

import numpy as np
import torch

from trainers.loss import Temperature, contrastive_loss


def numpy_infonce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    logits = a @ b.T / tau

    def xent(lg: np.ndarray) -> float:
        shifted = lg - lg.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(np.diag(log_probs)))

    return (xent(logits) + xent(logits.T)) / 2


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_infonce_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    a, b = unit_rows(rng, 16, 8), unit_rows(rng, 16, 8)
    for tau in (0.01, 0.07, 1.0):
        got = contrastive_loss(
            torch.tensor(a), torch.tensor(b), torch.tensor(1 / tau, dtype=torch.float64)
        )
        assert math.isclose(float(got), numpy_infonce(a, b, tau), rel_tol=1e-9)


def test_infonce_of_perfect_pairs_at_low_temperature_is_near_zero() -> None:
    a = torch.eye(4, dtype=torch.float64)
    assert float(contrastive_loss(a, a, torch.tensor(100.0))) < 1e-6
    # Unrelated pairs at tau = 1 cost about log(N).
    uniform = torch.ones(4, 4, dtype=torch.float64) / 2
    assert math.isclose(float(contrastive_loss(uniform, uniform, torch.tensor(1.0))), math.log(4))


def test_fixed_temperature_is_not_trained() -> None:
    t = Temperature(0.07, learnable=False, min_temperature=0.01)
    assert not t.log_scale.requires_grad
    assert math.isclose(t.value(), 0.07, rel_tol=1e-6)


def test_learned_temperature_is_clamped() -> None:
    t = Temperature(0.07, learnable=True, min_temperature=0.01)
    assert t.log_scale.requires_grad
    with torch.no_grad():
        t.log_scale.fill_(math.log(1e6))
    assert math.isclose(float(t.scale().detach()), 100.0, rel_tol=1e-6)
    assert math.isclose(t.value(), 0.01, rel_tol=1e-6)
