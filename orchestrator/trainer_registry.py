"""The trainers a spec may name: each one's config model, the metric names it declares
(trainers/reports.py) and how a worker runs it.

A static table rather than a plugin mechanism: a spec can only pick a trainer that is listed
here, so nothing in a spec ever imports or executes arbitrary code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from trainers.config import LandscapeConfig, TrialConfig
from trainers.reports import DUAL_ENCODER_METRICS, LANDSCAPE_METRICS

if TYPE_CHECKING:  # trainers.checkpoint imports torch, which validating a spec does not need
    from trainers.checkpoint import CheckpointHook


Report = Callable[[int, dict[str, float]], None]


def _run_dual_encoder(
    config: BaseModel, report: Report, checkpoint: CheckpointHook | None, gpus: float
) -> dict[str, float]:
    from trainers.dual_encoder import train_dual_encoder  # torch is imported in workers only

    assert isinstance(config, TrialConfig)  # guaranteed by the registry entry
    return train_dual_encoder(config, report, checkpoint, gpus).metrics


def _run_landscape(
    config: BaseModel, report: Report, checkpoint: CheckpointHook | None, gpus: float
) -> dict[str, float]:
    from trainers.landscape import run_landscape  # a closed-form simulation: nothing to resume

    assert isinstance(config, LandscapeConfig)  # guaranteed by the registry entry
    return run_landscape(config, report)


@dataclass(frozen=True)
class TrainerEntry:
    config_model: type[BaseModel]
    metrics: tuple[str, ...]  # every name the trainer may report, and only those
    # (config, report, checkpoint hook, the share of a GPU Ray gave the trial) -> final metrics
    run: Callable[[BaseModel, Report, CheckpointHook | None, float], dict[str, float]]


TRAINERS: dict[str, TrainerEntry] = {
    "dual_encoder": TrainerEntry(TrialConfig, DUAL_ENCODER_METRICS, _run_dual_encoder),
    "landscape": TrainerEntry(LandscapeConfig, LANDSCAPE_METRICS, _run_landscape),
}


def config_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted path a spec may set: each field, and inside nested configs each of theirs.

    For a union of configs (data sets by `data.name`, towers by `kind`) the paths of every
    member count: which of them applies depends on the value the spec picks.
    """
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        for nested in _config_models(field.annotation):
            paths |= config_paths(nested, f"{path}.")
    return paths


def _config_models(annotation: Any) -> list[type[BaseModel]]:
    """The config models inside an annotation: itself, or the members of a union/Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _config_models(arg)]
