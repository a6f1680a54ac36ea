"""The data sets a trial config may name, by `data.name`: a static table, extended by adding a
config model to config_data.DataConfig and its maker here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainers.config_data import DataConfig
from trainers.data import make_shapes
from trainers.data_digits import make_digits
from trainers.data_graph import make_knowledge_graph
from trainers.data_image_text import make_image_text
from trainers.data_speech import make_spoken_captions
from trainers.data_types import PairedData
from trainers.data_vectors import make_gaussian, make_paired_features

DATASETS: dict[str, Callable[[Any, int], PairedData]] = {
    "shapes": make_shapes,
    "digits": make_digits,
    "gaussian": make_gaussian,
    "paired_features": make_paired_features,
    "image_text": make_image_text,
    "knowledge_graph": make_knowledge_graph,
    "spoken_captions": make_spoken_captions,
}


def make_data(config: DataConfig, seed: int) -> PairedData:
    """The data set `config.name`, drawn from `seed` alone."""
    return DATASETS[config.name](config, seed)
