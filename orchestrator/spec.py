"""The sweep spec: Pydantic models, safe YAML loading, and validation with one line per problem.

A spec names a trainer, a `base` trial config every trial starts from, and `parameters`: dotted
paths into the trial config, each with one search domain.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import SpecError
from orchestrator.overrides import override_problems, set_paths, with_overrides
from orchestrator.search_spec import (
    Constraint,
    PackSetting,
    Sampler,
    SchedulerSpec,
    parse_constraint,
    search_problems,
)
from orchestrator.spec_file import parse_spec_yaml, read_spec_text
from orchestrator.trainer_registry import TRAINERS, config_paths

DOMAIN_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
# A leading letter or digit keeps `.`, `..` and option-like names out: the name becomes a folder.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
INT64_MAX = 2**63 - 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Domain(_Frozen):
    """Exactly one of: `grid` (every value), `choice` (drawn), `uniform`, `loguniform`
    (`[low, high]`, drawn) or `randint` (`[low, high)`, drawn)."""

    grid: list[Any] | None = Field(None, min_length=1)
    choice: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Domain:
        given = [k for k in DOMAIN_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DOMAIN_KINDS)} (got {len(given)})")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]} needs low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        if bounds is not None:
            _check_drawable(given[0], bounds)
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DOMAIN_KINDS if getattr(self, k) is not None)


def _check_drawable(kind: str, bounds: tuple[float, float] | tuple[int, int]) -> None:
    """Bounds the random generator can draw between (numpy refuses infinite or huge ranges)."""
    low, high = bounds
    if kind == "randint":
        if not -INT64_MAX <= low < high <= INT64_MAX:
            raise ValueError(f"randint bounds must lie within ±{INT64_MAX} (2^63 - 1)")
    elif not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)):
        raise ValueError(f"{kind} needs finite bounds with a finite difference, got {list(bounds)}")


class MetricSpec(_Frozen):
    """A metric the spec's trainer declares (checked in `load_spec_text`, which knows it)."""

    name: str = "loss"
    mode: Literal["min", "max"] = "min"


class Resources(_Frozen):
    cpu: float = Field(1.0, gt=0, le=1024)
    gpu: float = Field(0.0, ge=0, le=64)

    @property
    def trials_per_gpu(self) -> int | None:
        """How many trials share one GPU when each asks for a fraction of it (None: no sharing)."""
        return int(1 // self.gpu) if 0 < self.gpu < 1 else None


class StageSpec(_Frozen):
    """A sweep run before the spec's own trials (the paper's pretraining before fine-tuning):
    its trials start from the spec's `base` with the stage's `base` merged over it, and every
    trial of the next stage (after the last, the spec's own) warm-starts from its best trial by
    `metric`. It is stored as a sweep of its own, named `<sweep>.<stage>`."""

    name: str = Field(min_length=1, max_length=40)
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Domain] = Field(default_factory=dict)
    metric: MetricSpec = MetricSpec()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"{name!r}: start with a letter or digit; letters, digits, -_. only")
        return name


class SweepSpec(_Frozen):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    trainer: str = "dual_encoder"
    base: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Domain] = Field(default_factory=dict)
    search: Literal["grid", "random", "optuna"] = "grid"
    seed: int = Field(0, ge=0, description="seed of the random draws of the search")
    num_samples: int = Field(1, ge=1, le=100_000)
    sampler: Sampler | None = Field(None, description="search: optuna's sampler (default tpe)")
    scheduler: SchedulerSpec | None = None
    # One objective, or several (search: optuna); the first is the sweep's metric everywhere a
    # single one is meant (the live table, the scheduler, the best trial).
    metric: MetricSpec | list[MetricSpec] = MetricSpec()
    constraints: list[str] = Field(default_factory=list, max_length=8)
    resources: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(
        1, ge=0, le=100, description="retries of a failed trial (a lost node, a raise)"
    )
    stages: list[StageSpec] = Field(default_factory=list, max_length=4)
    pack: PackSetting = 1  # trials trained together as one vectorised model (docs/packing.md)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(
                f"{name!r}: start with a letter or digit and use only letters, digits, '-', '_'"
                " and '.' (the name becomes a folder and the MLflow experiment)"
            )
        return name

    @model_validator(mode="after")
    def _known_trainer(self) -> SweepSpec:
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; known: {', '.join(TRAINERS)}")
        return self

    @model_validator(mode="after")
    def _stages_fit(self) -> SweepSpec:
        names = [stage.name for stage in self.stages]
        if len(set(names)) < len(names):
            raise ValueError(f"stages: names must differ, got {names}")
        if any(len(stage_sweep(self.name, n)) > 100 for n in names):
            raise ValueError("stages: the sweep's name and a stage's, with a dot, exceed 100")
        return self

    @field_validator("metric")
    @classmethod
    def _objectives(cls, metric: MetricSpec | list[MetricSpec]) -> MetricSpec | list[MetricSpec]:
        if isinstance(metric, list):
            names = [m.name for m in metric]
            if not 1 <= len(metric) <= 4 or len(set(names)) < len(names):
                raise ValueError(f"give one to four different objectives, got {names}")
        return metric

    @field_validator("constraints")
    @classmethod
    def _constraints_parse(cls, constraints: list[str]) -> list[str]:
        for text in constraints:
            parse_constraint(text)
        return constraints

    @property
    def objectives(self) -> tuple[MetricSpec, ...]:
        return tuple(self.metric) if isinstance(self.metric, list) else (self.metric,)

    @property
    def primary(self) -> MetricSpec:
        """The first objective: the sweep's metric wherever one is meant."""
        return self.objectives[0]

    @property
    def parsed_constraints(self) -> tuple[Constraint, ...]:
        return tuple(parse_constraint(text) for text in self.constraints)

    def stage_source(self, index: int) -> dict[str, str]:
        """The warm start of the trials after stage `index`: its best trial."""
        return {"sweep": stage_sweep(self.name, self.stages[index].name), "trial": "best"}


def stage_sweep(sweep: str, stage: str) -> str:
    """The name a stage is stored under."""
    return f"{sweep}.{stage}"


@dataclass(frozen=True)
class LoadedSpec:
    spec: SweepSpec  # with the overrides applied to its base
    text: str  # the spec as written
    path: Path
    overrides: dict[str, Any] = field(default_factory=dict)  # `--set` path -> value
    stages: tuple[LoadedSpec, ...] = ()  # run first, in order (SweepSpec.stages)

    @property
    def spec_hash(self) -> str:
        """A hash of the spec as written, and of its overrides when there are any."""
        payload = self.text
        if self.overrides:
            payload += json.dumps(self.overrides, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_spec(path: Path, overrides: Mapping[str, Any] | None = None) -> LoadedSpec:
    """Read, parse and validate a spec file with `--set` overrides of its base settings;
    every problem found is raised at once."""
    return load_spec_text(read_spec_text(path), path, overrides)


def load_spec_text(
    text: str, path: Path, overrides: Mapping[str, Any] | None = None, label: str = ""
) -> LoadedSpec:
    """Parse and validate spec text; `path`, then `label` (a stage's), name it in messages."""
    written = parse_spec_yaml(text, path)
    where = f"{path}: {label}" if label else str(path)
    refused = override_problems(written, overrides or {})
    problems = list(refused.values())
    data = with_overrides(written, {k: v for k, v in (overrides or {}).items() if k not in refused})
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems += format_validation_error(exc, prefix=where)
        spec = None
    # Check base and parameter paths even when the spec has other errors, so one run of
    # `validate` lists everything there is to fix.
    trainer = data.get("trainer", "dual_encoder")
    if isinstance(trainer, str) and trainer in TRAINERS:
        base, parameters = data.get("base"), data.get("parameters")
        if isinstance(base, dict):
            problems += _check_base(trainer, base, where)
        if isinstance(parameters, dict):
            problems += _check_parameter_paths(trainer, [str(p) for p in parameters], where)
        metric = data.get("metric")
        for one in metric if isinstance(metric, list) else [metric]:
            if isinstance(one, dict) and isinstance(one.get("name"), str):
                problems += _check_metric(trainer, one["name"], where)
    if spec is not None:
        problems += search_problems(spec, where)
        for constraint in spec.parsed_constraints:
            problems += _check_metric(spec.trainer, constraint.metric, where, "constraints")
    stages: tuple[LoadedSpec, ...] = ()
    if spec is not None and spec.stages:
        stages, stage_problems = _stage_specs(spec, path)
        problems += stage_problems
        # The spec's own trials start from the last stage's best trial.
        warm = {WARM_START: spec.stage_source(len(spec.stages) - 1)}
        spec = spec.model_copy(update={"base": set_paths(spec.base, warm)})
    if problems or spec is None:
        raise SpecError(problems)
    return LoadedSpec(
        spec=spec, text=text, path=path, overrides=dict(overrides or {}), stages=stages
    )


WARM_START = "model.init.warm_start"


def _stage_specs(spec: SweepSpec, path: Path) -> tuple[tuple[LoadedSpec, ...], list[str]]:
    """Each stage as a spec of its own, validated as any spec is (its problems named by stage)."""
    if WARM_START not in config_paths(TRAINERS[spec.trainer].config_model):
        return (), [f"{path}: stages: trainer {spec.trainer} cannot warm-start a trial"]
    if any(_sets(WARM_START, b) for b in (spec.base, *(s.base for s in spec.stages))):
        return (), [
            f"{path}: stages: each stage warm-starts from the one before; remove "
            f"{WARM_START} from base"
        ]
    loaded, problems = [], []
    for index, stage in enumerate(spec.stages):
        base = _merged(spec.base, stage.base)
        if index:
            base = set_paths(base, {WARM_START: spec.stage_source(index - 1)})
        data = {
            "name": stage_sweep(spec.name, stage.name),
            "description": stage.description or f"stage {stage.name} of sweep {spec.name}",
            "trainer": spec.trainer,
            "base": base,
            "parameters": {p: d.model_dump(exclude_none=True) for p, d in stage.parameters.items()},
            "metric": stage.metric.model_dump(),
            "resources": spec.resources.model_dump(),
            "max_concurrent_trials": spec.max_concurrent_trials,
            "max_failures": spec.max_failures,
            "pack": spec.pack,
        }
        try:
            text = yaml.safe_dump(data, sort_keys=False)
            loaded.append(load_spec_text(text, path, label=f"stage {stage.name}"))
        except SpecError as exc:
            problems += exc.problems
    return tuple(loaded), problems


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`, section by section."""
    out = dict(base)
    for key, value in over.items():
        inner = out.get(key)
        both = isinstance(value, Mapping) and isinstance(inner, Mapping)
        out[key] = _merged(inner, value) if both else value  # type: ignore[arg-type]
    return out


def _sets(dotted: str, base: Mapping[str, Any]) -> bool:
    node: Any = base
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def format_validation_error(exc: ValidationError, prefix: str, loc_prefix: str = "") -> list[str]:
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "too_short" and _has_item_error(err["loc"], errors):
            continue  # a list whose only item is invalid: the item's own line says it all
        parts = [str(p) for p in err["loc"]]
        loc = f"{loc_prefix}{'.'.join(parts)}" if parts else loc_prefix.rstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(parts[-1], _known_keys(parts[:-1]))
        lines.append(f"{prefix}: {loc or '(top level)'}: {msg}")
    return lines


def _has_item_error(loc: tuple[Any, ...], errors: list[Any]) -> bool:
    return any(len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors)


def _known_keys(parent: list[str]) -> list[str]:
    """The keys allowed where an unknown one was found, for a "did you mean" hint."""
    if not parent:
        return list(SweepSpec.model_fields)
    if parent[0] == "parameters":
        return list(DOMAIN_KINDS)
    sections: dict[str, type[BaseModel]] = {
        "metric": MetricSpec,
        "resources": Resources,
        "scheduler": SchedulerSpec,
    }
    nested = sections.get(parent[0])
    return list(nested.model_fields) if nested else []


def _check_base(trainer: str, base: dict[str, Any], where: str) -> list[str]:
    model = TRAINERS[trainer].config_model
    try:
        model.model_validate(base)
    except ValidationError as exc:
        return format_validation_error(exc, prefix=where, loc_prefix="base.")
    return []


def _check_parameter_paths(trainer: str, dotted_paths: list[str], where: str) -> list[str]:
    known = config_paths(TRAINERS[trainer].config_model)
    problems = []
    for dotted in dotted_paths:
        if dotted not in known:
            hint = _did_you_mean(dotted, sorted(known))
            problems.append(f"{where}: parameters.{dotted}: unknown parameter path{hint}")
    return problems


def _check_metric(trainer: str, name: str, where: str, field: str = "metric.name") -> list[str]:
    declared = TRAINERS[trainer].metrics
    if name in declared:
        return []
    hint = _did_you_mean(name, declared) or f"; {trainer} reports: {', '.join(declared)}"
    return [f"{where}: {field}: unknown metric {name!r} for trainer {trainer}{hint}"]


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
