"""Frozen, validated configuration of one trial of the `dual_encoder` trainer.

Every field here is addressable from a sweep spec by its dotted path (`loss.temperature`,
`model.init.seed`, `data.name`, `model.image.kind`, ...). Unknown keys are errors so that a typo
never silently falls back to a default. Data sets and towers are unions tagged by `data.name`
and `model.<tower>.kind` (data.py, towers.py beside this file).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainers.config.base import FrozenModel, added_field
from trainers.config.clip_folder import fill_from_clip_folder, read_clip_folder
from trainers.config.data import (
    DataConfig,
    ImageFolderDataConfig,
    ImageTextDataConfig,
    ShapesDataConfig,
)
from trainers.config.pairs import PairName, apply_pair
from trainers.config.towers import (
    ClipPretrainedTowerConfig,
    CNNTowerConfig,
    ImageTowerConfig,
    MLPTowerConfig,
    TextSideTowerConfig,
    TextTowerConfig,
)

InitScheme = Literal["default", "normal", "xavier", "kaiming", "orthogonal"]


class WarmStartConfig(FrozenModel):
    """A trial of another sweep whose final weights this trial starts from. The orchestrator
    resolves it into `model.init.checkpoint` before the trial runs."""

    sweep: str = Field(min_length=1, description="the sweep that trained the source model")
    trial: str = Field("best", min_length=1, description="a trial key, or `best` by its metric")


class InitConfig(FrozenModel):
    """How tower weights are drawn; `seed` is kept apart from the data seed."""

    scheme: InitScheme = "default"
    std: float = Field(0.02, gt=0.0, le=10.0, description="std of weights and biases (`normal`)")
    seed: int | None = Field(None, ge=0, description="init seed; the trial seed when unset")
    close_gap: Literal["none", "procrustes"] = Field(
        "none", description="rotate tower b onto tower a at init (the paper's Sec. 4.3)"
    )
    checkpoint: str | None = Field(
        None, description="file or folder of a saved state whose tower weights are loaded"
    )
    warm_start: WarmStartConfig | None = None


class ModelConfig(FrozenModel):
    embed_dim: int = Field(32, ge=2, le=4096, description="size of the shared embedding space")
    image: ImageTowerConfig = CNNTowerConfig()
    text: TextSideTowerConfig = TextTowerConfig()
    init: InitConfig = InitConfig()

    @model_validator(mode="after")
    def _unprojected_mlp_fits(self) -> ModelConfig:
        for side in ("image", "text"):
            tower = getattr(self, side)
            unprojected = isinstance(tower, MLPTowerConfig) and not tower.projection
            if unprojected and tower.depth > 0 and tower.width != self.embed_dim:
                raise ValueError(
                    f"{side}: an mlp without projection outputs its width {tower.width}; "
                    f"set width to embed_dim {self.embed_dim} or projection: true"
                )
        return self

    @model_validator(mode="after")
    def _clip_towers_fit(self) -> ModelConfig:
        for side in ("image", "text"):
            tower = getattr(self, side)
            if not isinstance(tower, ClipPretrainedTowerConfig):
                continue
            if tower.path is None:
                raise ValueError(
                    f"{side}: a clip_pretrained tower needs path, its CLIP folder "
                    f"(--set model.{side}.path=FOLDER)"
                )
            size = read_clip_folder(tower.path).projection_dim
            if size != self.embed_dim:
                raise ValueError(
                    f"embed_dim {self.embed_dim} does not fit the CLIP folder {tower.path}, "
                    f"whose projections give {size}; leave embed_dim out (or set it to {size})"
                )
        return self


class LossConfig(FrozenModel):
    """Symmetric InfoNCE. `temperature` is tau in logits = cos / tau (CLIP starts at 0.07)."""

    temperature: float = Field(0.07, gt=0.0, le=100.0)
    learn_temperature: bool = False
    min_temperature: float = Field(0.01, gt=0.0, description="clamp of a learned temperature")
    temperature_lr: float | None = added_field(
        None,
        gt=0.0,
        le=10.0,
        description="learning rate of a learned temperature (default: optim.lr)",
    )
    temperature_clamp: Literal["in_place", "in_forward"] | None = added_field(
        None,
        validate_default=True,
        description="how a learned temperature is held at min_temperature: in_place (clamped"
        " after each step, as CLIP does, so it can rise again; the default) or in_forward (the"
        " forward pass clamps a parameter that may run past the cap and then gets no gradient:"
        " gapsweep before 2026-12, kept to reproduce it)",
    )

    @model_validator(mode="after")
    def _clamp_below_start(self) -> LossConfig:
        if self.learn_temperature and self.temperature < self.min_temperature:
            raise ValueError(
                f"temperature {self.temperature} is below min_temperature {self.min_temperature}"
            )
        if self.temperature_lr is not None and not self.learn_temperature:
            raise ValueError("temperature_lr is set but learn_temperature is false")
        if self.temperature_clamp is not None and not self.learn_temperature:
            raise ValueError("temperature_clamp is set but learn_temperature is false")
        return self

    @field_validator("temperature_clamp")
    @classmethod
    def _clamp_of_a_learned_temperature(cls, clamp: str | None, info: ValidationInfo) -> str | None:
        # Recorded in the config (and so in the key) for every learned temperature: trials that
        # ran with the forward clamp keep their keys and are not mistaken for these.
        if clamp is None and info.data.get("learn_temperature"):
            return "in_place"
        return clamp


class OptimConfig(FrozenModel):
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(64, ge=2, le=65536)
    epochs: float = Field(4.0, ge=0.0, le=10_000, description="passes over the training set")
    warmup_steps: int = added_field(
        0, ge=0, description="linear warm-up of every learning rate from 0 over the first N steps"
    )
    decay: Literal["weights", "all"] | None = added_field(
        None,
        validate_default=True,
        description="what weight_decay applies to: weights (matrices and kernels; not the"
        " temperature, norms or biases, as CLIP trains; the default) or all (gapsweep before"
        " 2026-12)",
    )

    @field_validator("decay")
    @classmethod
    def _decay_rule(cls, decay: str | None, info: ValidationInfo) -> str | None:
        # Recorded wherever weight decay is on, so trials decayed under the old rule keep
        # their own keys; without weight decay the rule changes nothing and is left out.
        if decay is None and info.data.get("weight_decay", 0.0) > 0:
            return "weights"
        return decay


class EvalConfig(FrozenModel):
    every_steps: int = Field(50, ge=1, description="evaluate (and report) every N steps")
    shift_lambdas: tuple[float, ...] = Field(
        (), max_length=101, description="gap shifts lambda evaluated after training (Table 1)"
    )
    folder: ImageFolderDataConfig | None = added_field(
        None,
        description="a labelled image folder (one subfolder per class) on whose n_eval held-out"
        " images every evaluation also reports zero-shot accuracy and the gap (folder_*"
        " metrics), whatever the trial trains on",
    )

    @model_validator(mode="before")
    @classmethod
    def _folder_has_root(cls, raw: Any) -> Any:
        folder = raw.get("folder") if isinstance(raw, dict) else None
        if isinstance(folder, dict) and folder.get("root") is None:
            # A shipped spec names the folder's settings and leaves its path to the user.
            raise ValueError(
                "folder: needs root, a folder of class subfolders of images"
                " (--set eval.folder.root=FOLDER; --set eval.folder=null for no folder)"
            )
        return raw

    @model_validator(mode="after")
    def _folder_trains_nothing(self) -> EvalConfig:
        if self.folder is not None and self.folder.n_train is not None:
            raise ValueError(
                "folder.n_train: the evaluation folder trains nothing; leave it out and set"
                " folder.n_eval, the held-out images it is measured on"
            )
        return self


class TrialConfig(FrozenModel):
    """Everything one trial needs; the content hash of its JSON form is the trial's key."""

    seed: int = Field(0, ge=0, description="seed of the data and of the batch order")
    pair: PairName | None = added_field(
        None, description="modality-pair preset: sets data.name and both towers' kinds"
    )
    data: DataConfig = ShapesDataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _fill_pair_and_checkpoint(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("pair") is not None:
            raw = apply_pair(raw)
        return fill_from_clip_folder(raw) if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _folder_fits_the_towers(self) -> TrialConfig:
        folder = self.eval.folder
        if folder is None:
            return self
        if not isinstance(
            self.data, ShapesDataConfig | ImageTextDataConfig | ImageFolderDataConfig
        ):
            raise ValueError(
                f"eval.folder: zero-shot on images needs a trial on images with captions"
                f" (shapes, image_text, image_folder), not {self.data.name}"
            )
        size = self.data.image_size
        resizes = isinstance(self.model.image, ClipPretrainedTowerConfig)  # its own processor
        if folder.image_size != size and not resizes:
            raise ValueError(
                f"eval.folder.image_size {folder.image_size}: the image tower reads images of"
                f" data.image_size {size}; set eval.folder.image_size={size}"
            )
        return self

    @property
    def init_seed(self) -> int:
        return self.seed if self.model.init.seed is None else self.model.init.seed

    @property
    def n_train(self) -> int:
        """Training pairs; for files whose size is only known when read, a lower bound of 8."""
        return self.data.n_train if self.data.n_train is not None else 8

    @property
    def total_steps(self) -> int:
        """Optimiser steps: whole batches only, so every step sees the same number of negatives.

        For file data sets without an explicit `n_train` the loop counts from the data read.
        """
        return steps_for(self, self.n_train)


def steps_for(config: TrialConfig, n_train: int) -> int:
    per_epoch = max(n_train // config.optim.batch_size, 1)
    return math.ceil(config.optim.epochs * per_epoch)
