"""Frozen, validated configuration of one trial of the `dual_encoder` trainer.

Every field here is addressable from a sweep spec by its dotted path (`loss.temperature`,
`model.init.seed`, ...). Unknown keys are errors so that a typo never silently falls back to a
default.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ShapesDataConfig(FrozenModel):
    """Generated images of coloured shapes paired with captions such as "a small red circle"."""

    name: Literal["shapes"] = "shapes"
    n_train: int = Field(2048, ge=8, le=1_000_000, description="training pairs")
    n_eval: int = Field(512, ge=8, le=100_000, description="held-out pairs for evaluation")
    image_size: int = Field(24, ge=12, le=128, description="side of the square images in pixels")
    noise: float = Field(0.05, ge=0.0, le=1.0, description="std of per-pixel Gaussian noise")


class CNNTowerConfig(FrozenModel):
    """A small convolutional image tower: conv blocks, global average pooling, projection."""

    channels: tuple[int, ...] = Field((16, 32), min_length=1, max_length=8)


class TextTowerConfig(FrozenModel):
    """A small BERT-style text transformer built from a transformers config (no download)."""

    hidden_size: int = Field(64, ge=8, le=1024)
    num_layers: int = Field(2, ge=1, le=24)
    num_heads: int = Field(2, ge=1, le=16)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TextTowerConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        return self


InitScheme = Literal["default", "normal", "xavier", "kaiming", "orthogonal"]


class InitConfig(FrozenModel):
    """How tower weights are drawn; `seed` is kept apart from the data seed."""

    scheme: InitScheme = "default"
    std: float = Field(0.02, gt=0.0, le=10.0, description="std for the `normal` scheme")
    seed: int | None = Field(None, ge=0, description="init seed; the trial seed when unset")


class ModelConfig(FrozenModel):
    embed_dim: int = Field(32, ge=2, le=4096, description="size of the shared embedding space")
    image: CNNTowerConfig = CNNTowerConfig()
    text: TextTowerConfig = TextTowerConfig()
    init: InitConfig = InitConfig()


class LossConfig(FrozenModel):
    """Symmetric InfoNCE. `temperature` is tau in logits = cos / tau (CLIP starts at 0.07)."""

    temperature: float = Field(0.07, gt=0.0, le=100.0)
    learn_temperature: bool = False
    min_temperature: float = Field(0.01, gt=0.0, description="clamp of a learned temperature")

    @model_validator(mode="after")
    def _clamp_below_start(self) -> LossConfig:
        if self.learn_temperature and self.temperature < self.min_temperature:
            raise ValueError(
                f"temperature {self.temperature} is below min_temperature {self.min_temperature}"
            )
        return self


class OptimConfig(FrozenModel):
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(64, ge=2, le=65536)
    epochs: float = Field(4.0, ge=0.0, le=10_000, description="passes over the training set")


class EvalConfig(FrozenModel):
    every_steps: int = Field(50, ge=1, description="evaluate (and report) every N steps")


class TrialConfig(FrozenModel):
    """Everything one trial needs; the content hash of its JSON form is the trial's key."""

    seed: int = Field(0, ge=0, description="seed of the data and of the batch order")
    data: ShapesDataConfig = ShapesDataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def init_seed(self) -> int:
        return self.seed if self.model.init.seed is None else self.model.init.seed

    @property
    def total_steps(self) -> int:
        """Optimiser steps: whole batches only, so every step sees the same number of negatives."""
        per_epoch = max(self.data.n_train // self.optim.batch_size, 1)
        return math.ceil(self.optim.epochs * per_epoch)
