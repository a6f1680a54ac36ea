"""The spec's adaptive-search keys: an Optuna sampler, an early-stopping scheduler, several
objectives and constraints on the final metrics (orchestrator/study.py and schedulers.py run
them). Torch-, Ray- and Optuna-free, so that validating a spec stays quick."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from orchestrator.spec import SweepSpec

Sampler = Literal["tpe", "cmaes", "nsgaii", "random", "qmc"]
# `pack`: members per vectorised model (1: every trial alone), or "auto": sized from the trial's
# resources and its memory (orchestrator/packing.py).
MAX_PACK = 256


def _pack_setting(value: object) -> object:
    """One clear line for a bad `pack` instead of one per member of the union."""
    ok = value == "auto" or (type(value) is int and 1 <= value <= MAX_PACK)
    if not ok:
        raise ValueError(f"give auto or a number of members from 1 to {MAX_PACK}, not {value!r}")
    return value


PackSetting = Annotated[Literal["auto"] | int, BeforeValidator(_pack_setting)]
# Samplers that optimise several objectives at once (Optuna's CMA-ES takes one).
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "nsgaii", "random", "qmc")
# Samplers that take constraints on the final metrics (Optuna's trial.set_constraint).
CONSTRAINED_SAMPLERS = ("tpe", "nsgaii")

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*(\S+)\s*$")


class SchedulerSpec(BaseModel):
    """Early stopping of trials whose metric lags (Ray Tune's schedulers), by trainer steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["asha", "median", "hyperband"]
    grace_steps: int = Field(
        64, ge=1, description="no trial is stopped before it has trained this many steps"
    )
    reduction_factor: float = Field(
        3.0, gt=1, le=16, description="asha, hyperband: keep 1 in this many at each rung"
    )
    brackets: int = Field(1, ge=1, le=8, description="asha: brackets of different grace")

    @model_validator(mode="after")
    def _median_takes_no_rungs(self) -> SchedulerSpec:
        given = self.model_fields_set & {"reduction_factor", "brackets"}
        if self.kind == "median" and given:
            raise ValueError(f"{', '.join(sorted(given))}: not used by the median rule")
        if self.kind == "hyperband" and self.model_fields_set & {"brackets", "grace_steps"}:
            raise ValueError("brackets, grace_steps: hyperband sizes its own from the steps")
        return self


class Constraint(BaseModel):
    """`metric <= bound` or `metric >= bound`, on a trial's final metrics."""

    model_config = ConfigDict(frozen=True)

    metric: str
    op: Literal["<=", ">="]
    bound: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when satisfied, the distance past the bound otherwise."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(text: str) -> Constraint:
    """`"gap_norm <= 0.3"` as a Constraint; ValueError saying the form otherwise."""
    found = _CONSTRAINT.match(text)
    bound = _number(found[3]) if found else None
    if found is None or bound is None:
        raise ValueError(
            f"{text!r}: write a constraint as 'metric <= number' or 'metric >= number'"
        )
    return Constraint(metric=found[1], op=found[2], bound=bound)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def search_problems(spec: SweepSpec, where: str) -> list[str]:
    """What the search keys of a valid spec cannot mean together, one line each."""
    kinds = {p: d.kind for p, d in spec.parameters.items()}
    problems = []
    if spec.search in ("random", "optuna"):
        problems += [
            f"{where}: parameters.{p}: grid is only for search: grid; use choice to draw values"
            for p, k in kinds.items()
            if k == "grid"
        ]
    elif spec.num_samples > 1 and all(k == "grid" for k in kinds.values()):
        problems.append(
            f"{where}: num_samples: {spec.num_samples} repeats of identical grid trials would be "
            "the same trial; put seeds in the grid (e.g. seed: {grid: [0, 1]}) instead"
        )
    optuna = spec.search == "optuna"
    if spec.sampler is not None and not optuna:
        problems.append(
            f"{where}: sampler: only with search: optuna (this spec searches {spec.search})"
        )
    if optuna and not spec.parameters:
        problems.append(f"{where}: parameters: search: optuna needs at least one drawn parameter")
    sampler = spec.sampler or "tpe"
    if len(spec.objectives) > 1 and not optuna:
        problems.append(
            f"{where}: metric: several objectives need search: optuna (sampler nsgaii or tpe)"
        )
    elif len(spec.objectives) > 1 and sampler not in MULTI_OBJECTIVE_SAMPLERS:
        problems.append(
            f"{where}: sampler: {sampler} optimises one objective; use nsgaii or tpe for "
            f"{len(spec.objectives)}"
        )
    if spec.pack != 1 and (optuna or spec.scheduler is not None):
        why = "a scheduler stops" if spec.scheduler is not None else "search: optuna draws"
        problems.append(
            f"{where}: pack: {why} trials one by one; packs run with search grid or random"
        )
    if spec.constraints and not (optuna and sampler in CONSTRAINED_SAMPLERS):
        problems.append(
            f"{where}: constraints: only with search: optuna and sampler "
            f"{' or '.join(CONSTRAINED_SAMPLERS)}"
        )
    return problems
