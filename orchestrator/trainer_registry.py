"""The trainers a spec may name, and the metric vocabulary shared by every part of the product.

A static table rather than a plugin mechanism: a spec can only pick a trainer that is listed
here, so nothing in a spec ever imports or executes arbitrary code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from trainers.config import TrialConfig
from trainers.landscape import LandscapeConfig

if TYPE_CHECKING:  # trainers.checkpoint imports torch, which validating a spec does not need
    from trainers.checkpoint import CheckpointHook

METRIC_NAMES = (
    "loss",
    "temperature",
    "gap_norm",
    "centroid_cosine",
    "paired_cosine",
    "paired_distance",
    "rmg",
    "cone_cosine_a",
    "cone_cosine_b",
    "linear_separability",
    "alignment",
    "uniformity_a",
    "uniformity_b",
    "zero_shot_acc",
    "recall_at_1_a2b",
    "recall_at_1_b2a",
    "train_loss",
    # groups of the data (shapes backgrounds): the fairness view of the paper's Table 2
    "worst_group_acc",
    "group_acc_spread",
    # the gap shift of Table 1, evaluated after training (eval.shift_lambdas)
    "shift_best_lambda",
    "shift_best_zero_shot_acc",
    "shift_zero_shot_gain",
    # the `landscape` trainer (Figure 3): per shift, and where the loss is lowest
    "shift",
    "min_loss",
    "min_loss_gap",
    "min_loss_shift",
)

Report = Callable[[int, dict[str, float]], None]


def _run_dual_encoder(
    config: BaseModel, report: Report, checkpoint: CheckpointHook | None
) -> dict[str, float]:
    from trainers.dual_encoder import train_dual_encoder  # torch is imported in workers only

    assert isinstance(config, TrialConfig)  # guaranteed by the registry entry
    return train_dual_encoder(config, report, checkpoint).metrics


def _run_landscape(
    config: BaseModel, report: Report, checkpoint: CheckpointHook | None
) -> dict[str, float]:
    from trainers.landscape import run_landscape  # a closed-form simulation: nothing to resume

    assert isinstance(config, LandscapeConfig)  # guaranteed by the registry entry
    return run_landscape(config, report)


@dataclass(frozen=True)
class TrainerEntry:
    config_model: type[BaseModel]
    run: Callable[[BaseModel, Report, CheckpointHook | None], dict[str, float]]


TRAINERS: dict[str, TrainerEntry] = {
    "dual_encoder": TrainerEntry(config_model=TrialConfig, run=_run_dual_encoder),
    "landscape": TrainerEntry(config_model=LandscapeConfig, run=_run_landscape),
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
