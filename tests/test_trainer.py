"""The dual_encoder trainer on tiny configs, without Ray: what it reports, and reproducibility."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from trainers.config import ShapesDataConfig, TrialConfig
from trainers.data.shapes import SHAPES, make_shapes
from trainers.dual_encoder import train_dual_encoder
from trainers.gap import gap_metrics

REPORTED = {
    "loss",
    "temperature",
    "gap_norm",
    "centroid_cosine",
    "paired_cosine",
    "cone_cosine_a",
    "cone_cosine_b",
    "zero_shot_acc",
    "recall_at_1_a2b",
    "recall_at_1_b2a",
}


def run(config: TrialConfig) -> tuple[list[tuple[int, dict[str, float]]], Any]:
    reports: list[tuple[int, dict[str, float]]] = []
    result = train_dual_encoder(config, lambda step, m: reports.append((step, dict(m))))
    return reports, result


def test_reports_at_step_zero_and_every_n_steps(tiny_base: dict[str, Any]) -> None:
    tiny_base["optim"]["epochs"] = 2  # 64 pairs / batch 16 = 4 steps an epoch -> 8 steps
    reports, result = run(TrialConfig.model_validate(tiny_base))
    assert [step for step, _ in reports] == [0, 2, 4, 6, 8]
    assert result.steps == 8
    for _, metrics in reports:
        assert metrics.keys() >= REPORTED
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0.0 <= metrics["zero_shot_acc"] <= 1.0
        assert 0.0 <= metrics["gap_norm"] <= 2.0
    assert "train_loss" in reports[-1][1]
    assert reports[-1][1] == result.metrics


def test_metrics_are_those_of_the_final_embeddings(tiny_base: dict[str, Any]) -> None:
    _, result = run(TrialConfig.model_validate(tiny_base))
    direct = gap_metrics(result.embeddings.a, result.embeddings.b)
    assert result.metrics["gap_norm"] == pytest.approx(direct["gap_norm"], abs=1e-6)


def test_same_seed_same_run_other_seed_other_run(tiny_base: dict[str, Any]) -> None:
    config = TrialConfig.model_validate(tiny_base)
    first, second = run(config)[0], run(config)[0]
    assert first == second
    other = run(config.model_copy(update={"seed": 1}))[0]
    assert other != first


def test_init_seed_is_separate_from_data_seed(tiny_base: dict[str, Any]) -> None:
    tiny_base["optim"]["epochs"] = 0
    base = TrialConfig.model_validate(tiny_base)
    at_init = run(base)[0]
    assert [s for s, _ in at_init] == [0]  # epochs 0 measures at initialisation only
    tiny_base["model"]["init"] = {"seed": 5}
    reinit = run(TrialConfig.model_validate(tiny_base))[0]
    assert reinit[0][1]["gap_norm"] != at_init[0][1]["gap_norm"]


def test_learned_temperature_moves_and_is_reported(tiny_base: dict[str, Any]) -> None:
    tiny_base["loss"] = {"temperature": 0.07, "learn_temperature": True}
    tiny_base["optim"]["lr"] = 0.05
    reports, _ = run(TrialConfig.model_validate(tiny_base))
    temps = [m["temperature"] for _, m in reports]
    assert temps[0] == pytest.approx(0.07, rel=1e-5)
    assert temps[-1] != pytest.approx(0.07, rel=1e-3)
    assert min(temps) >= 0.01 - 1e-9


@pytest.mark.parametrize("scheme", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_schemes_train(tiny_base: dict[str, Any], scheme: str) -> None:
    tiny_base["model"]["init"] = {"scheme": scheme}
    reports, _ = run(TrialConfig.model_validate(tiny_base))
    assert all(math.isfinite(m["loss"]) for _, m in reports)


def test_training_lowers_the_loss() -> None:
    config = TrialConfig.model_validate(
        {
            "data": {"n_train": 256, "n_eval": 128, "image_size": 16},
            "optim": {"epochs": 6, "batch_size": 32},
            "eval": {"every_steps": 48},
            "loss": {"temperature": 0.1},
        }
    )
    reports, _ = run(config)
    assert reports[-1][1]["loss"] < reports[0][1]["loss"] - 0.3
    assert reports[-1][1]["recall_at_1_a2b"] > reports[0][1]["recall_at_1_a2b"]


def test_shapes_data_is_deterministic_and_well_formed() -> None:
    config = ShapesDataConfig(n_train=40, n_eval=20, image_size=16)
    first, second = make_shapes(config, 3), make_shapes(config, 3)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.eval.tokens, second.eval.tokens)
    assert not torch.equal(first.train.images, make_shapes(config, 4).train.images)
    assert first.train.images.shape == (40, 3, 16, 16)
    assert first.eval.images.shape == (20, 3, 16, 16)
    assert first.class_inputs is not None and first.prompt_class is not None
    assert first.class_inputs.shape[0] == 24 * len(SHAPES)  # every caption of each shape
    assert torch.bincount(first.prompt_class).tolist() == [24] * len(SHAPES)
    assert first.train.tokens.dtype == torch.int64
    # The eval split does not change when the training set grows.
    bigger = make_shapes(config.model_copy(update={"n_train": 80}), 3)
    assert torch.equal(bigger.eval.images, first.eval.images)


def test_shapes_captions_describe_the_images() -> None:
    data = make_shapes(ShapesDataConfig(n_train=200, n_eval=8, noise=0.0), 0)
    vocab = data.tokenizer.vocab
    for i in range(20):
        words = [vocab[t] for t in data.train.tokens[i].tolist() if t > 2]
        assert words[-1] == SHAPES[int(data.train.shape_ids[i])]
        pixels = data.train.images[i]
        lit = (pixels.sum(dim=0) > 0).float().mean().item()
        assert (lit > 0.16) == ("large" in words)  # small: <= 10% of the frame, large: >= 20%
    assert np.unique(data.train.shape_ids.numpy()).size == len(SHAPES)
