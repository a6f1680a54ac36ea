"""The towers of the dual encoder, built by `kind` from a static table.

Every tower maps a batch of its modality's inputs to L2-normalised embeddings and ends in a
linear `proj` (except an mlp with `projection: false`), which is where closing the gap at init
rotates tower b. A new tower family is a module here, a config in trainers/config/towers.py and
one row of TOWERS (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainers.config import ModelConfig, TowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError
from trainers.towers.audio import AudioTower
from trainers.towers.clip import ClipTextTower, ClipVisionTower
from trainers.towers.cnn import CNNTower
from trainers.towers.graph import GraphTower
from trainers.towers.init import apply_init, fresh_parts
from trainers.towers.mlp import MLPTower
from trainers.towers.transformer import TextTransformerTower, ViTTower

Builder = Callable[[Any, InputSpec, int], nn.Module]


def _pretrained(config: Any, spec: InputSpec, embed_dim: int) -> nn.Module:
    from trainers.towers.pretrained import PretrainedTextTower

    return PretrainedTextTower(config, embed_dim)


def _clip_pretrained(config: Any, spec: InputSpec, embed_dim: int) -> nn.Module:
    from trainers.towers.clip_pretrained import build_clip_pretrained

    return build_clip_pretrained(config, spec, embed_dim)


# kind -> (builder, the input kinds it reads)
TOWERS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "cnn": (CNNTower, ("image",)),
    "vit": (ViTTower, ("image",)),
    "clip_vision": (ClipVisionTower, ("image",)),
    "text_transformer": (TextTransformerTower, ("tokens",)),
    "clip_text": (ClipTextTower, ("tokens",)),
    "mlp": (MLPTower, ("vector", "image")),
    "pretrained_text": (_pretrained, ("tokens",)),
    "clip_pretrained": (_clip_pretrained, ("image", "tokens")),
    "audio_cnn": (AudioTower, ("audio",)),
    "graph_mpnn": (GraphTower, ("graph",)),
}


def build_tower(config: TowerConfig, spec: InputSpec, embed_dim: int, side: str) -> nn.Module:
    builder, reads = TOWERS[config.kind]
    if spec.kind not in reads:
        raise DataError(
            f"model.{side}: a {config.kind} tower reads {' or '.join(reads)} inputs, but the "
            f"data set gives this side {spec.kind} inputs"
        )
    return builder(config, spec, embed_dim)


def build_towers(
    config: ModelConfig, specs: tuple[InputSpec, InputSpec], init_seed: int
) -> tuple[nn.Module, nn.Module]:
    """Both towers, drawn from `init_seed` alone so the init does not depend on the data seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        image = build_tower(config.image, specs[0], config.embed_dim, "image")
        text = build_tower(config.text, specs[1], config.embed_dim, "text")
        for tower in (image, text):
            for part in fresh_parts(tower):
                apply_init(part, config.init)
    return image, text
