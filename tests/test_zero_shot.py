"""Zero-shot classification with prompt ensembles: the phrasings of one variant of a class are
averaged and renormalised (CLIP's ensemble), a class's variants (every size and colour of a
shape) are alternatives, and an image takes the class of its closest variant. Checked against
an independent NumPy computation, and recorded with the trial."""

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
    assert data.prompt_variant is not None  # a variant per size and colour, in two phrasings
    assert torch.bincount(data.prompt_variant).tolist() == [2] * (len(SHAPES) * 12)
    captions = set(data.train.b_texts or ()) | set(data.eval.b_texts or ())
    assert captions <= set().union(*by_class.values())  # the prompts cover what is said


def test_digits_prompt_with_their_caption_templates() -> None:
    data = make_digits(DigitsDataConfig(n_train=100, n_eval=50), seed=0)
    assert data.prompt_class is not None
    assert torch.bincount(data.prompt_class).tolist() == [4] * 10


def test_ensemble_zero_shot_equals_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(0)
    n, d, classes, variants, phrasings = 300, 16, 5, 3, 4

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
    labels = rng.integers(classes, size=n)
    rows = classes * variants * phrasings
    prompts = unit(rng.normal(size=(rows, d)) + np.repeat(a[: classes * variants], phrasings, 0))
    owners = np.repeat(np.arange(classes), variants * phrasings)
    variant = np.repeat(np.arange(classes * variants), phrasings)
    centres = unit(
        np.stack([prompts[variant == v].mean(axis=0) for v in range(classes * variants)])
    )
    scores = a @ centres.T  # the best variant of each class is the class's score
    best = np.stack(
        [scores[:, k * variants : (k + 1) * variants].max(axis=1) for k in range(classes)]
    )
    expected = float(np.mean(best.argmax(axis=0) == labels))

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).float()

    targets = class_embeddings(t(prompts), torch.from_numpy(owners), torch.from_numpy(variant))
    split = PairedSplit(t(a), t(b), torch.arange(n), labels=torch.from_numpy(labels))
    metrics = evaluate(Embeddings(t(a), t(b)), split, targets, torch.tensor(10.0), 32)
    assert np.allclose(targets.vectors.numpy(), centres, atol=1e-6)
    assert targets.classes.tolist() == np.repeat(np.arange(classes), variants).tolist()
    assert metrics["zero_shot_acc"] == pytest.approx(expected, abs=1e-6)  # float32 mean


def test_a_trial_records_the_prompts_it_used(tiny_base: dict[str, Any], tmp_path: Path) -> None:
    config = TrialConfig.model_validate(tiny_base)
    train_dual_encoder(config, lambda s, m: None, FolderCheckpoints(tmp_path))
    arrays = load_embeddings(tmp_path)
    names, prompts, owners = arrays["class_names"], arrays["class_prompts"], arrays["prompt_class"]
    assert names.tolist() == list(SHAPES) and arrays["class_b"].shape[0] == 12 * len(SHAPES)
    assert np.bincount(arrays["class_b_class"]).tolist() == [12] * len(SHAPES)
    assert len(prompts) == len(owners) == 24 * len(SHAPES)
    assert "a large red circle" in prompts[owners == 0].tolist()
