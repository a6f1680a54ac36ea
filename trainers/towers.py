"""The two towers of the dual encoder and their initialisation schemes."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import CNNTowerConfig, InitConfig, ModelConfig, TextTowerConfig


class CNNTower(nn.Module):
    """Conv-ReLU-pool blocks, global average pooling, then a linear projection."""

    def __init__(self, config: CNNTowerConfig, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in config.channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(in_ch, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.features(images).mean(dim=(2, 3))
        return F.normalize(self.proj(h), dim=-1)


class TextTransformerTower(nn.Module):
    """A BERT encoder built from a transformers config (nothing downloaded); [CLS] is projected."""

    def __init__(
        self, config: TextTowerConfig, embed_dim: int, vocab_size: int, max_length: int
    ) -> None:
        super().__init__()
        # Imported here so that importing the trainers package stays cheap.
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size,
            max_position_embeddings=max(max_length, 8),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.encoder = BertModel(bert_config, add_pooling_layer=False)
        self.proj = nn.Linear(config.hidden_size, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).long()
        hidden = self.encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
        return F.normalize(self.proj(hidden[:, 0]), dim=-1)


def build_towers(
    config: ModelConfig, vocab_size: int, max_length: int, init_seed: int
) -> tuple[nn.Module, nn.Module]:
    """Both towers, drawn from `init_seed` alone so the init does not depend on the data seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        image = CNNTower(config.image, config.embed_dim)
        text = TextTransformerTower(config.text, config.embed_dim, vocab_size, max_length)
        for tower in (image, text):
            apply_init(tower, config.init)
    return image, text


def apply_init(module: nn.Module, init: InitConfig) -> None:
    """Re-draw the weights of every linear, conv and embedding layer by the chosen scheme."""
    if init.scheme == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, nn.Linear | nn.Conv2d | nn.Embedding):
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
