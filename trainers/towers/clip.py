"""CLIP-like towers built from transformers' CLIP configs (nothing downloaded): the image-text
pair whose published checkpoints the paper measured, at sizes a CPU trains in minutes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config.towers import ClipTextTowerConfig, ClipVisionTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError
from trainers.towers.attention import attention_bias, pool_tokens


class ClipVisionTower(nn.Module):
    """CLIPVisionModel: patches, pre-norm transformer, layer-normed [CLS], then `proj`."""

    def __init__(self, config: ClipVisionTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        channels, size = spec.shape[0], spec.shape[1]
        if size % config.patch_size:
            raise DataError(
                f"clip_vision patch_size {config.patch_size} does not divide image {size}"
            )
        vision = CLIPVisionConfig(
            image_size=size,
            patch_size=config.patch_size,
            num_channels=channels,
            hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            attention_dropout=0.0,
        )
        self.encoder: Any = CLIPVisionModel(vision)
        self.proj = nn.Linear(config.hidden_size, embed_dim, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder(pixel_values=images).pooler_output
        return F.normalize(self.proj(pooled), dim=-1)


class ClipTextTower(nn.Module):
    """CLIPTextModel: causal transformer over the caption; the final-layer-normed state at each
    caption's last token (CLIP's end-of-text position) is projected."""

    def __init__(self, config: ClipTextTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        text = CLIPTextConfig(
            vocab_size=spec.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            max_position_embeddings=max(spec.shape[0], 8),
            attention_dropout=0.0,
            # The word tokenizer has [PAD] = 0 and [CLS] = 1 and no end-of-text token; the
            # tower pools at the last real token itself, so the model's own pooler is unused.
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
        )
        self.encoder: Any = CLIPTextModel(text)
        self.proj = nn.Linear(config.hidden_size, embed_dim, bias=False)
        self.pooling = config.pooling or "eot"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bias = attention_bias(tokens, causal=True)
        hidden = self.encoder(input_ids=tokens, attention_mask=bias).last_hidden_state
        return F.normalize(self.proj(pool_tokens(hidden, tokens, self.pooling)), dim=-1)
