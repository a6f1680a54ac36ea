"""The towers of the dual encoder, built by `kind` from a static table, and their init schemes.

Every tower maps a batch of its modality's inputs to L2-normalised embeddings and ends in a
linear `proj` (except an mlp with `projection: false`), which is where closing the gap at init
rotates tower b.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import (
    CNNTowerConfig,
    InitConfig,
    MLPTowerConfig,
    ModelConfig,
    TextTowerConfig,
    TowerConfig,
    ViTTowerConfig,
)
from trainers.data_types import InputSpec
from trainers.errors import DataError
from trainers.towers_audio import AudioTower
from trainers.towers_clip import ClipTextTower, ClipVisionTower
from trainers.towers_graph import GraphTower


class CNNTower(nn.Module):
    """Conv-ReLU-pool blocks, global average pooling, then a linear projection."""

    def __init__(self, config: CNNTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = spec.shape[0]
        for out_ch in config.channels:
            # ceil_mode: small inputs (8x8 digits) keep at least one pixel after many blocks.
            pool = nn.MaxPool2d(2, ceil_mode=True)
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), pool]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(in_ch, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.features(images).mean(dim=(2, 3))
        return F.normalize(self.proj(h), dim=-1)


class ViTTower(nn.Module):
    """A ViT built from a transformers ViTConfig (nothing downloaded); [CLS] is projected."""

    def __init__(self, config: ViTTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTModel

        channels, size = spec.shape[0], spec.shape[1]
        if size % config.patch_size:
            raise DataError(f"vit patch_size {config.patch_size} does not divide image {size}")
        vit_config = ViTConfig(
            image_size=size,
            patch_size=config.patch_size,
            num_channels=channels,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.encoder = ViTModel(vit_config, add_pooling_layer=False)
        self.proj = nn.Linear(config.hidden_size, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(pixel_values=images).last_hidden_state
        return F.normalize(self.proj(hidden[:, 0]), dim=-1)


class TextTransformerTower(nn.Module):
    """A BERT encoder built from a transformers config (nothing downloaded); [CLS] is projected."""

    def __init__(self, config: TextTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        # Imported here so that importing the trainers package stays cheap.
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=spec.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size,
            max_position_embeddings=max(spec.shape[0], 8),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.encoder = BertModel(bert_config, add_pooling_layer=False)
        self.proj = nn.Linear(config.hidden_size, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).long()
        hidden = self.encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
        return F.normalize(self.proj(hidden[:, 0]), dim=-1)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
}


class MLPTower(nn.Module):
    """`depth` Linear+activation layers on flattened inputs, then (optionally) a projection."""

    def __init__(self, config: MLPTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        in_dim = math.prod(spec.shape)
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            layers += [nn.Linear(in_dim, config.width, bias=config.bias)]
            layers += [ACTIVATIONS[config.activation]()]
            in_dim = config.width
        self.layers = nn.Sequential(*layers)
        self.proj: nn.Module = nn.Linear(in_dim, embed_dim) if config.projection else nn.Identity()
        if not config.projection and in_dim != embed_dim:
            raise DataError(
                f"an mlp without projection outputs {in_dim} dimensions, not embed_dim {embed_dim}"
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.layers(inputs.flatten(1))), dim=-1)


Builder = Callable[[Any, InputSpec, int], nn.Module]


def _pretrained(config: Any, spec: InputSpec, embed_dim: int) -> nn.Module:
    from trainers.towers_pretrained import PretrainedTextTower

    return PretrainedTextTower(config, embed_dim)


# kind -> (builder, the input kinds it reads)
TOWERS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "cnn": (CNNTower, ("image",)),
    "vit": (ViTTower, ("image",)),
    "clip_vision": (ClipVisionTower, ("image",)),
    "text_transformer": (TextTransformerTower, ("tokens",)),
    "clip_text": (ClipTextTower, ("tokens",)),
    "mlp": (MLPTower, ("vector", "image")),
    "pretrained_text": (_pretrained, ("tokens",)),
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


def fresh_parts(tower: nn.Module) -> list[nn.Module]:
    """The parts of a tower an init scheme re-draws: all of it, except pretrained weights."""
    parts = getattr(tower, "fresh_parts", None)
    return list(parts()) if callable(parts) else [tower]


def apply_init(module: nn.Module, init: InitConfig) -> None:
    """Re-draw the weights of every linear, conv and embedding layer by the chosen scheme."""
    if init.scheme == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Embedding):
            continue
        _init_weight(layer.weight, init)
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            if init.scheme == "normal":
                nn.init.normal_(bias, 0.0, init.std)
            else:
                nn.init.zeros_(bias)


def _init_weight(weight: torch.Tensor, init: InitConfig) -> None:
    if init.scheme == "normal":
        nn.init.normal_(weight, 0.0, init.std)
    elif init.scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif init.scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    elif init.scheme == "orthogonal":
        nn.init.orthogonal_(weight)
