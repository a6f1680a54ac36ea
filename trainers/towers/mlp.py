"""The mlp tower of the cone experiments (the paper's Fig. 2b): Linear+activation layers on
flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import MLPTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError

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
