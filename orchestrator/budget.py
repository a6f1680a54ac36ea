"""The size budget of one trial, checked when a spec is validated: each tower's parameters and
the bytes of data a trainer generates, estimated from the config (trainers/config/sizes.py)
against limits that fit a worker. A message names the field, the estimate and the limit; the
limits are environment settings, for machines that hold more."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from trainers.config import TrialConfig
from trainers.config.sizes import generated_bytes, input_shape, tower_parameters

# ~4 GB of float32 weights, ~16 GB with Adam's two moments and the gradient: a large worker's
# memory. A CLIP ViT-L/14 has 0.43 billion.
MAX_TOWER_PARAMETERS = int(float(os.environ.get("GAPSWEEP_MAX_PARAMETERS", "1e9")))
MAX_DATA_BYTES = int(float(os.environ.get("GAPSWEEP_MAX_DATA_BYTES", str(8 * 2**30))))


def budget_problems(config: BaseModel, source: str, varied: dict[str, Any]) -> list[str]:
    """One line per tower or data set over its budget; nothing for trainers without either."""
    if not isinstance(config, TrialConfig):
        return []
    problems = []
    for side in ("image", "text"):
        tower = getattr(config.model, side)
        shape = input_shape(config.data, side)
        count = tower_parameters(tower, shape, config.model.embed_dim)
        if count > MAX_TOWER_PARAMETERS:
            problems.append(
                f"{source}: model.{side}: a {tower.kind} tower of about {_count(count)} parameters"
                f" is over the budget of {_count(MAX_TOWER_PARAMETERS)} per tower"
                f" (GAPSWEEP_MAX_PARAMETERS){_with(varied, 'model.', 'data.')}"
            )
    size = generated_bytes(config.data)
    if size > MAX_DATA_BYTES:
        problems.append(
            f"{source}: data: the {config.data.name} data set would take about {_bytes(size)} in"
            f" memory, over the budget of {_bytes(MAX_DATA_BYTES)} (GAPSWEEP_MAX_DATA_BYTES)"
            f"{_with(varied, 'data.')}"
        )
    return problems


def _count(n: int) -> str:
    return f"{n / 1e9:.3g} billion" if n >= 1e9 else f"{n / 1e6:.3g} million"


def _bytes(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def _with(varied: dict[str, Any], *sections: str) -> str:
    """The swept values that decide a size, so a grid's one bad point reads as one line (a seed
    grid over a base that is too large gives the same line for every seed, kept once)."""
    sizing = [f"{path}={value}" for path, value in varied.items() if path.startswith(sections)]
    return f" (with {' '.join(sizing)})" if sizing else ""
