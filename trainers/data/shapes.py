"""The `shapes` data set, generated deterministically from a seed.

Small RGB images of a coloured shape of some size at a random position, each paired with a
caption such as "a small red circle"; with `backgrounds` > 1 each image also lies on one of a
few background colours, a group attribute the captions do not mention (for per-group accuracy).
Everything is built once per trial as whole tensors (vectorised NumPy), so the training loop
does no per-sample Python work. The other data sets are in data_*.py; `make_data` picks one.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.config import ShapesDataConfig
from trainers.data.paired import (
    InputSpec,
    PairedData,
    PairedSplit,
    PromptEnsemble,
    text_split,
    token_spec,
)
from trainers.data.tokenizer import WordTokenizer

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.6, 0.2, 0.8),
    "white": (0.95, 0.95, 0.95),
}
SIZES = {"small": 0.18, "large": 0.34}  # half-extent as a share of the image side
TEMPLATES = ("a {size} {colour} {shape}", "a photo of a {size} {colour} {shape}")
ZERO_SHOT_TEMPLATE = "a photo of a {shape}"


BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "grey": (0.4, 0.4, 0.4), "navy": (0.1, 0.1, 0.35)}
ShapesData = PairedData  # the name the shapes data had before there were other data sets


def caption_vocabulary() -> list[str]:
    """Every caption and prompt the data set can produce; the tokenizer is built from these."""
    captions = [
        t.format(size=s, colour=c, shape=sh)
        for t in TEMPLATES
        for s in SIZES
        for c in COLOURS
        for sh in SHAPES
    ]
    return captions + [ZERO_SHOT_TEMPLATE.format(shape=sh) for sh in SHAPES]


def shape_prompts() -> list[list[list[str]]]:
    """The zero-shot prompts of each shape: every caption the data set can say of it, one
    variant per size and colour, each in every template (phrasings averaged, variants as
    alternatives: trainers/data/paired.py). One prompt naming the shape alone says less than
    any caption does, and the mean over colours and sizes blurs what the captions tell apart."""
    return [
        [[t.format(size=s, colour=c, shape=sh) for t in TEMPLATES] for s in SIZES for c in COLOURS]
        for sh in SHAPES
    ]


def make_shapes(config: ShapesDataConfig, seed: int) -> ShapesData:
    tokenizer = WordTokenizer.from_texts(caption_vocabulary())
    # Separate streams so the eval split does not change when n_train does.
    train_rng, eval_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    prompts = PromptEnsemble.of(tokenizer, shape_prompts())
    return PairedData(
        train=_make_split(config, config.n_train, train_rng, tokenizer),
        eval=_make_split(config, config.n_eval, eval_rng, tokenizer),
        a_input=InputSpec("image", (3, config.image_size, config.image_size)),
        b_input=token_spec(tokenizer),
        class_names=SHAPES,
        tokenizer=tokenizer,
        group_names=tuple(BACKGROUNDS)[: config.backgrounds],
    ).with_prompts(prompts)


def _make_split(
    config: ShapesDataConfig, n: int, rng: np.random.Generator, tokenizer: WordTokenizer
) -> PairedSplit:
    shape_ids = rng.integers(len(SHAPES), size=n)
    colour_ids = rng.integers(len(COLOURS), size=n)
    size_ids = rng.integers(len(SIZES), size=n)
    template_ids = rng.integers(len(TEMPLATES), size=n)
    half = np.array(list(SIZES.values()))[size_ids]
    # Keep the whole shape inside the frame: centre within [half, 1 - half].
    centres = half[:, None] + rng.random((n, 2)) * (1.0 - 2.0 * half[:, None])
    masks = _shape_masks(shape_ids, centres, half, config.image_size)
    rgb = np.array(list(COLOURS.values()), dtype=np.float32)[colour_ids]
    images = masks[:, None, :, :] * rgb[:, :, None, None]
    noise = rng.normal(0.0, config.noise, size=images.shape).astype(np.float32)
    # Drawn last, and only when asked for, so one background leaves the data as it always was.
    groups = rng.integers(config.backgrounds, size=n) if config.backgrounds > 1 else None
    if groups is not None:
        background = np.array(list(BACKGROUNDS.values()), dtype=np.float32)[groups]
        images += (1.0 - masks[:, None, :, :]) * background[:, :, None, None]
    images += noise
    captions = [
        TEMPLATES[t].format(size=list(SIZES)[s], colour=list(COLOURS)[c], shape=SHAPES[sh])
        for t, s, c, sh in zip(template_ids, size_ids, colour_ids, shape_ids, strict=True)
    ]
    # recall_at_1_* counts the same caption text, class_recall_at_1_* any caption of the shape
    # (trainers/evaluate.py).
    return text_split(
        torch.from_numpy(images.astype(np.float32)), captions, tokenizer, shape_ids, groups
    )


def _shape_masks(
    shape_ids: np.ndarray, centres: np.ndarray, half: np.ndarray, size: int
) -> np.ndarray:
    """(N, size, size) float32 masks, 1 inside each pair's shape, computed for all at once."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    h = half[:, None, None]
    circle = dx**2 + dy**2 <= h**2
    square = (np.abs(dx) <= 0.8 * h) & (np.abs(dy) <= 0.8 * h)
    # Upward triangle: inside the bottom edge and within the two slanted sides.
    triangle = (dy <= h) & (np.abs(dx) <= (dy + h) / 2.0)
    cross = (
        ((np.abs(dx) <= h / 3.0) | (np.abs(dy) <= h / 3.0)) & (np.abs(dx) <= h) & (np.abs(dy) <= h)
    )
    stacked = np.stack([circle, square, triangle, cross])
    masks: np.ndarray = stacked[shape_ids, np.arange(len(shape_ids))].astype(np.float32)
    return masks
