"""The audio tower: a small 1-D CNN over the frames of a log-mel spectrogram.

The mel bands are the channels and time is the one convolved axis, as in keyword-spotting
models: a spoken word is a pattern across all bands that may occur at any time, so the convs
slide over time only and a mean over time makes the embedding independent of where the word is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config.towers import AudioTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError


class AudioTower(nn.Module):
    """Conv1d-ReLU-pool blocks over time, mean pooling over time, then a linear projection."""

    def __init__(self, config: AudioTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        if spec.kind != "audio" or len(spec.shape) != 2:
            raise DataError(
                f"an audio_cnn tower reads (n_mels, frames) spectrograms, not {spec.kind} "
                f"inputs of shape {spec.shape}"
            )
        layers: list[nn.Module] = []
        in_ch = spec.shape[0]
        for out_ch in config.channels:
            # ceil_mode: short clips keep at least one frame after many blocks.
            pool = nn.MaxPool1d(2, ceil_mode=True)
            conv = nn.Conv1d(in_ch, out_ch, config.kernel_size, padding=config.kernel_size // 2)
            layers += [conv, nn.ReLU(), pool]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(in_ch, embed_dim)

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, embed_dim) unit vectors."""
        pooled = self.features(spectrograms).mean(dim=2)
        return F.normalize(self.proj(pooled), dim=-1)
