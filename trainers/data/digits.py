"""The `digits` data set: scikit-learn's 8x8 handwritten digits (offline), each paired with a
caption drawn from several templates ("a handwritten seven", "the number seven", ...)."""

from __future__ import annotations

import numpy as np
import torch

from trainers.config import DigitsDataConfig
from trainers.data.paired import (
    InputSpec,
    PairedData,
    PromptEnsemble,
    held_out_order,
    text_split,
    token_spec,
)
from trainers.data.tokenizer import WordTokenizer

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten {w}",
    "the number {w}",
    "an image of the digit {w}",
    "a blurry photo of a {w}",
)
ZERO_SHOT_TEMPLATE = "a photo of the digit {w}"


def make_digits(config: DigitsDataConfig, seed: int) -> PairedData:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, read from disk

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    order = held_out_order(len(labels), seed)
    train_idx, eval_idx = order[: config.n_train], order[len(order) - config.n_eval :]
    prompts = [ZERO_SHOT_TEMPLATE.format(w=w) for w in WORDS]
    vocabulary = [t.format(w=w) for t in TEMPLATES for w in WORDS] + prompts
    tokenizer = WordTokenizer.from_texts(vocabulary)
    # Every caption template of a digit, as its prompt ensemble.
    ensemble = PromptEnsemble.of(tokenizer, [[[t.format(w=w) for t in TEMPLATES]] for w in WORDS])
    rng = np.random.default_rng([seed, 3])

    def split(idx: np.ndarray) -> tuple[torch.Tensor, list[str]]:
        pixels = images[idx] + rng.normal(0.0, config.noise, images[idx].shape).astype(np.float32)
        templates = rng.integers(len(TEMPLATES), size=len(idx))
        captions = [
            TEMPLATES[t].format(w=WORDS[y]) for t, y in zip(templates, labels[idx], strict=True)
        ]
        return torch.from_numpy(pixels), captions

    train_images, train_captions = split(train_idx)
    eval_images, eval_captions = split(eval_idx)
    # Retrieval: recall_at_1_* counts the same caption, class_recall_at_1_* any caption of the
    # digit (trainers/evaluate.py).
    return PairedData(
        train=text_split(train_images, train_captions, tokenizer, labels[train_idx]),
        eval=text_split(eval_images, eval_captions, tokenizer, labels[eval_idx]),
        a_input=InputSpec("image", (1, 8, 8)),
        b_input=token_spec(tokenizer),
        class_names=WORDS,
        tokenizer=tokenizer,
    ).with_prompts(ensemble)
