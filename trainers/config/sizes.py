"""A trial's size estimated from its config alone, before anything is built or generated: the
parameters of a tower and the bytes of the data a trainer generates. Good to a small factor, which
is what a budget needs: a spec asking for a 68-billion-parameter MLP is refused when it is
validated, not when a worker runs out of memory an hour later."""

from __future__ import annotations

from typing import Literal

from trainers.config.data import (
    DataConfig,
    DigitsDataConfig,
    GaussianDataConfig,
    ShapesDataConfig,
    SpokenCaptionsDataConfig,
)
from trainers.config.towers import (
    AudioTowerConfig,
    ClipTextTowerConfig,
    ClipVisionTowerConfig,
    CNNTowerConfig,
    GraphTowerConfig,
    MLPTowerConfig,
    TextTowerConfig,
    TowerConfig,
    ViTTowerConfig,
)

FLOAT32_BYTES = 4
CONV2D_KERNEL = 3 * 3  # trainers/towers/cnn.py
Side = Literal["image", "text"]


def input_shape(data: DataConfig, side: Side) -> tuple[int, ...] | None:
    """One example's shape as the tower on `side` reads it, where the config alone says it
    (generated data sets); None for the user's files and for token sequences."""
    if isinstance(data, ShapesDataConfig) and side == "image":
        return (3, data.image_size, data.image_size)
    if isinstance(data, DigitsDataConfig) and side == "image":
        return (1, 8, 8)
    if isinstance(data, GaussianDataConfig):
        return (data.dim,)
    if isinstance(data, SpokenCaptionsDataConfig) and side == "image":
        return (data.n_mels, data.frames)
    return None


def tower_parameters(tower: TowerConfig, shape: tuple[int, ...] | None, embed_dim: int) -> int:
    """Weights of one tower, its projection included; 0 for pretrained towers, whose size is
    their files' (and a transformer's vocabulary and position tables, small beside its blocks,
    are left out)."""
    if isinstance(tower, MLPTowerConfig):
        return _mlp(tower, _flat(shape), embed_dim)
    if isinstance(tower, CNNTowerConfig):
        return _convs(shape[0] if shape else 3, tower.channels, CONV2D_KERNEL, embed_dim)
    if isinstance(tower, AudioTowerConfig):
        return _convs(shape[0] if shape else 1, tower.channels, tower.kernel_size, embed_dim)
    if isinstance(
        tower, ViTTowerConfig | ClipVisionTowerConfig | TextTowerConfig | ClipTextTowerConfig
    ):
        return _transformer(tower.num_layers, tower.hidden_size, embed_dim)
    if isinstance(tower, GraphTowerConfig):
        # a message, an update and a gate per round, each hidden x hidden
        return tower.num_layers * 3 * tower.hidden_size**2 + tower.hidden_size * embed_dim
    return 0


def generated_bytes(data: DataConfig) -> int:
    """Bytes of float32 inputs a trainer generates and holds for the data set (both splits);
    0 where the data is the user's files, read or streamed from disk."""
    if isinstance(data, ShapesDataConfig):
        return (data.n_train + data.n_eval) * 3 * data.image_size**2 * FLOAT32_BYTES
    if isinstance(data, GaussianDataConfig):
        return (data.n_train + data.n_eval) * 2 * data.dim * FLOAT32_BYTES
    if isinstance(data, SpokenCaptionsDataConfig):
        return (data.n_train + data.n_eval) * data.n_mels * data.frames * FLOAT32_BYTES
    return 0


def _flat(shape: tuple[int, ...] | None) -> int:
    size = 1
    for dim in shape or (0,):
        size *= dim
    return size


def _mlp(tower: MLPTowerConfig, in_dim: int, embed_dim: int) -> int:
    if tower.depth == 0:
        return in_dim * embed_dim
    hidden = in_dim * tower.width + (tower.depth - 1) * tower.width**2
    return hidden + (tower.width * embed_dim if tower.projection else 0)


def _convs(in_ch: int, channels: tuple[int, ...], kernel: int, embed_dim: int) -> int:
    total = 0
    for out_ch in channels:
        total += in_ch * out_ch * kernel
        in_ch = out_ch
    return total + in_ch * embed_dim


def _transformer(layers: int, hidden: int, embed_dim: int) -> int:
    # attention (4 h^2) and a 4x MLP (8 h^2) per block
    return layers * 12 * hidden**2 + hidden * embed_dim
