"""The data sets a trial config may name, by `data.name`: a static table, extended by adding a
config model to trainers/config/data.py:DataConfig and its maker here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainers.config.data import DataConfig
from trainers.data.digits import make_digits
from trainers.data.gaussian import make_gaussian
from trainers.data.image_folder import make_image_folder
from trainers.data.image_text import make_image_text
from trainers.data.knowledge_graph import make_knowledge_graph
from trainers.data.paired import PairedData
from trainers.data.paired_features import make_paired_features
from trainers.data.shapes import make_shapes
from trainers.data.spoken_captions import make_spoken_captions

DATASETS: dict[str, Callable[[Any, int], PairedData]] = {
    "shapes": make_shapes,
    "digits": make_digits,
    "gaussian": make_gaussian,
    "paired_features": make_paired_features,
    "image_text": make_image_text,
    "image_folder": make_image_folder,
    "knowledge_graph": make_knowledge_graph,
    "spoken_captions": make_spoken_captions,
}


def make_data(config: DataConfig, seed: int) -> PairedData:
    """The data set `config.name`, drawn from `seed` alone."""
    return DATASETS[config.name](config, seed)
