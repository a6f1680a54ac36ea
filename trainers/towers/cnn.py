"""The default image tower: a small convolutional network."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import CNNTowerConfig
from trainers.data.paired import InputSpec


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
