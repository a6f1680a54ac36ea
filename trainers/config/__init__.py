"""Every configuration model of the trainers, free of torch: what a sweep spec validates against
and what flows down to a trial, frozen. A dotted path of a spec (`loss.temperature`,
`model.image.kind`) addresses a field of `TrialConfig` (or of `LandscapeConfig`).

- base.py: the frozen base model and the helpers for tagged unions and added fields
- trial.py: the `dual_encoder` trial (seed, model, init, loss, optim, eval, device)
- data.py: one model per data set (`data.name`); towers.py: one per tower (`kind`)
- pairs.py: modality-pair presets; mel.py: the spectrogram geometry; landscape.py
"""

from trainers.config.base import FrozenModel
from trainers.config.data import (
    DataConfig,
    DigitsDataConfig,
    GaussianDataConfig,
    ImageFolderDataConfig,
    ImageTextDataConfig,
    KnowledgeGraphDataConfig,
    PairedFeaturesDataConfig,
    ShapesDataConfig,
    SpokenCaptionsDataConfig,
)
from trainers.config.landscape import LandscapeConfig
from trainers.config.towers import (
    AudioTowerConfig,
    ClipPretrainedTowerConfig,
    ClipTextTowerConfig,
    ClipVisionTowerConfig,
    CNNTowerConfig,
    GraphTowerConfig,
    MLPTowerConfig,
    PretrainedTextTowerConfig,
    TextTowerConfig,
    TowerConfig,
    ViTTowerConfig,
)
from trainers.config.trial import (
    EvalConfig,
    InitConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrialConfig,
    WarmStartConfig,
    steps_for,
)

__all__ = [
    "AudioTowerConfig",
    "CNNTowerConfig",
    "ClipPretrainedTowerConfig",
    "ClipTextTowerConfig",
    "ClipVisionTowerConfig",
    "DataConfig",
    "DigitsDataConfig",
    "EvalConfig",
    "FrozenModel",
    "GaussianDataConfig",
    "GraphTowerConfig",
    "ImageFolderDataConfig",
    "ImageTextDataConfig",
    "InitConfig",
    "KnowledgeGraphDataConfig",
    "LandscapeConfig",
    "LossConfig",
    "MLPTowerConfig",
    "ModelConfig",
    "OptimConfig",
    "PairedFeaturesDataConfig",
    "PretrainedTextTowerConfig",
    "ShapesDataConfig",
    "SpokenCaptionsDataConfig",
    "TextTowerConfig",
    "TowerConfig",
    "TrialConfig",
    "ViTTowerConfig",
    "WarmStartConfig",
    "steps_for",
]
