"""Transformer towers built from transformers configs (nothing downloaded): a ViT for images and
a BERT encoder for token ids, the ViT projecting its [CLS] state, the text tower the state its
`pooling` picks ([CLS] by default)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import TextTowerConfig, ViTTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError
from trainers.towers.attention import attention_bias, pool_tokens


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
    """A BERT encoder built from a transformers config (nothing downloaded); the state `pooling`
    picks ([CLS] unless set) is projected."""

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
        self.pooling = config.pooling or "cls"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bias = attention_bias(tokens, causal=False)
        hidden = self.encoder(input_ids=tokens, attention_mask=bias).last_hidden_state
        return F.normalize(self.proj(pool_tokens(hidden, tokens, self.pooling)), dim=-1)
