"""Zero-shot classification with prompt ensembles: a class embedding is the normalised mean of
the embeddings of its prompts (every caption the data set can say of the class), checked
against an independent NumPy computation, and recorded with the trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainers.checkpoint import FolderCheckpoints, load_embeddings
from trainers.config import DigitsDataConfig, ShapesDataConfig, TrialConfig
from trainers.data.digits import make_digits
from trainers.data.paired import PairedSplit
from trainers.data.shapes import COLOURS, SHAPES, SIZES, make_shapes
from trainers.dual_encoder import train_dual_encoder
from trainers.evaluate import Embeddings, class_embeddings, evaluate


def test_each_shape_is_prompted_by_every_caption_that_names_it() -> None:
    data = make_shapes(ShapesDataConfig(n_train=200, n_eval=100, image_size=12), seed=0)
    assert data.class_texts is not None and data.prompt_class is not None
    by_class = {
        shape: {t for t, k in zip(data.class_texts, data.prompt_class.tolist(), strict=True)
                if SHAPES[k] == shape}
        for shape in SHAPES
    }  # fmt: skip
    for shape, prompts in by_class.items():
        assert len(prompts) == 2 * len(SIZES) * len(COLOURS)
        assert all(p.endswith(f" {shape}") for p in prompts)
    captions = set(data.train.b_texts or ()) | set(data.eval.b_texts or ())
    assert captions <= set().union(*by_class.values())  # the prompts cover what is said


def test_digits_prompt_with_their_caption_templates() -> None:
    data = make_digits(DigitsDataConfig(n_train=100, n_eval=50), seed=0)
    assert data.prompt_class is not None
    assert torch.bincount(data.prompt_class).tolist() == [4] * 10


def test_ensemble_zero_shot_equals_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(0)
    n, d, classes, per_class = 300, 16, 5, 7

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
    labels = rng.integers(classes, size=n)
    prompts = unit(rng.normal(size=(classes * per_class, d)) + np.repeat(a[:classes], per_class, 0))
    owners = np.repeat(np.arange(classes), per_class)
    expected_classes = unit(np.stack([prompts[owners == k].mean(axis=0) for k in range(classes)]))
    expected = float(np.mean(np.argmax(a @ expected_classes.T, axis=1) == labels))

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).float()

    class_b = class_embeddings(t(prompts), torch.from_numpy(owners))
    split = PairedSplit(t(a), t(b), torch.arange(n), labels=torch.from_numpy(labels))
    metrics = evaluate(Embeddings(t(a), t(b)), split, class_b, torch.tensor(10.0), 32)
    assert np.allclose(class_b.numpy(), expected_classes, atol=1e-6)
    assert metrics["zero_shot_acc"] == pytest.approx(expected, abs=1e-6)  # float32 mean


def test_a_trial_records_the_prompts_it_used(tiny_base: dict[str, Any], tmp_path: Path) -> None:
    config = TrialConfig.model_validate(tiny_base)
    train_dual_encoder(config, lambda s, m: None, FolderCheckpoints(tmp_path))
    arrays = load_embeddings(tmp_path)
    names, prompts, owners = arrays["class_names"], arrays["class_prompts"], arrays["prompt_class"]
    assert names.tolist() == list(SHAPES) and arrays["class_b"].shape[0] == len(SHAPES)
    assert len(prompts) == len(owners) == 24 * len(SHAPES)
    assert "a large red circle" in prompts[owners == 0].tolist()
