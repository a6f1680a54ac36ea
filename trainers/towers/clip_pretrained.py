"""A pretrained CLIP's two towers, read from a local transformers folder (nothing downloaded):
the vision transformer with its visual projection, the text transformer with its text
projection. Each side loads the folder's CLIPModel and keeps its half.

The image tower takes images in [0, 1] at any size and does what the folder's image processor
does, on the device: resize the shorter side (bicubic, antialiased), centre-crop, normalise.
The text tower takes the ids of the folder's own tokenizer (trainers/towers/pretrained.py
re-encodes the captions); a caption ends at its first end-of-text token, whose state is
projected, as CLIP pools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import ClipPretrainedTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError
from trainers.towers.attention import bias_of


def build_clip_pretrained(
    config: ClipPretrainedTowerConfig, spec: InputSpec, embed_dim: int
) -> nn.Module:
    folder = Path(config.path or "").expanduser()
    clip = _load(folder)
    tower: nn.Module
    if spec.kind == "image":
        tower = PretrainedClipVision(clip, folder)
    else:
        tower = PretrainedClipText(clip, folder)
    if tower.proj.out_features != embed_dim:
        raise DataError(f"{folder}: its projections give {tower.proj.out_features} dimensions")
    _set_trainable(tower, config)
    return tower


def _load(folder: Path) -> Any:
    from transformers import CLIPModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # one bar a load: noise

    try:
        return CLIPModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{folder}: not a loadable CLIP model ({first})") from None


class PretrainedClipVision(nn.Module):
    mean: torch.Tensor  # the image processor's, as buffers that follow the tower's device
    std: torch.Tensor

    def __init__(self, clip: Any, folder: Path) -> None:
        super().__init__()
        self.encoder: Any = clip.vision_model
        self.proj: nn.Linear = clip.visual_projection
        processor = json.loads((folder / "preprocessor_config.json").read_text())
        self.shorter_side = _size(processor.get("size"), "shortest_edge")
        self.crop = _size(processor.get("crop_size"), "height")
        mean = torch.tensor(processor.get("image_mean", [0.0, 0.0, 0.0]))
        std = torch.tensor(processor.get("image_std", [1.0, 1.0, 1.0]))
        self.register_buffer("mean", mean[None, :, None, None], persistent=False)
        self.register_buffer("std", std[None, :, None, None], persistent=False)

    def fresh_parts(self) -> list[nn.Module]:
        return []  # every weight is pretrained: no init scheme redraws it

    def blocks(self) -> list[nn.Module]:
        return [*self.encoder.encoder.layers, self.encoder.post_layernorm]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = (self._resized(images) - self.mean) / self.std
        pooled = self.encoder(pixel_values=pixels).pooler_output
        return F.normalize(self.proj(pooled), dim=-1)

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        scale = self.shorter_side / min(height, width)
        size = (max(self.crop, round(height * scale)), max(self.crop, round(width * scale)))
        if size != (height, width):
            images = F.interpolate(images, size=size, mode="bicubic", antialias=True)
        top, left = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        return images[..., top : top + self.crop, left : left + self.crop]


class PretrainedClipText(nn.Module):
    def __init__(self, clip: Any, folder: Path) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.encoder: Any = clip.text_model
        self.proj: nn.Linear = clip.text_projection
        eos = AutoTokenizer.from_pretrained(str(folder), local_files_only=True).eos_token_id
        if eos is None:
            raise DataError(f"{folder}: its tokenizer has no end-of-text token")
        self.eos_id = int(eos)

    def fresh_parts(self) -> list[nn.Module]:
        return []

    def blocks(self) -> list[nn.Module]:
        return [*self.encoder.encoder.layers, self.encoder.final_layer_norm]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # The first end-of-text token ends the caption (a tokenizer may pad with it too).
        last = (tokens == self.eos_id).int().argmax(dim=1)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        bias = bias_of(positions[None, :] <= last[:, None], causal=True)
        hidden = self.encoder(input_ids=tokens, attention_mask=bias).last_hidden_state
        pooled = hidden[torch.arange(tokens.shape[0], device=tokens.device), last]
        return F.normalize(self.proj(pooled), dim=-1)


def _set_trainable(tower: nn.Module, config: ClipPretrainedTowerConfig) -> None:
    """Freeze what config.train leaves out: all, the encoder, or all but its last blocks."""
    train = config.train
    tower.requires_grad_(train != "none")
    if train in ("projection", "last_blocks"):
        tower.encoder.requires_grad_(False)
    if train == "last_blocks":
        blocks = tower.blocks()  # type: ignore[operator]
        for block in blocks[-(config.last_blocks + 1) :]:  # the final norm, then N blocks
            block.requires_grad_(True)


def _size(value: Any, key: str) -> int:
    if isinstance(value, dict):
        return int(value.get(key) or next(iter(value.values())))
    return int(value)
