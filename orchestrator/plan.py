"""Expansion of a spec into trials, each validated and keyed by a hash of its resolved config."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from numpy.random import Generator

    from orchestrator.store.views import NewTrial

from orchestrator.budget import budget_problems
from orchestrator.errors import SpecError
from orchestrator.overrides import set_paths
from orchestrator.settings import MAX_TRIALS_WITHOUT_YES, TRIAL_CAP
from orchestrator.spec import Domain, LoadedSpec, SweepSpec
from orchestrator.trainer_registry import TRAINERS

TRIAL_NAME_CHARS = 500  # the results store's column; a longer name is cut (the key identifies)


@dataclass(frozen=True)
class Trial:
    key: str
    index: int
    config: BaseModel
    varied: dict[str, Any]  # dotted path -> value, for the parameters the spec sweeps

    @property
    def name(self) -> str:
        """Short run name such as `temperature=0.01 seed=1`."""
        return trial_name(self.varied)

    @property
    def config_json(self) -> str:
        return self.config.model_dump_json()


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    trials: list[Trial]
    duplicates_dropped: int = 0
    stages: tuple[Plan, ...] = ()  # the plans of the stages that run before these trials


def planned_trials(spec: SweepSpec) -> int:
    """How many trials the spec expands to at most (draws may repeat), counted without
    expanding: the product of the grids' sizes times num_samples."""
    if spec.search == "optuna":
        return spec.num_samples  # the study's budget: it draws them one by one as it runs
    grids = [len(d.grid) for d in spec.parameters.values() if d.grid is not None]
    return math.prod(grids) * spec.num_samples


def check_trial_count(loaded: LoadedSpec, yes: bool) -> None:
    """Refuse a sweep over the hard cap, or over the --yes limit without --yes, before any of
    its trials is expanded (a 10^12-point grid is answered at once)."""
    count = sum(planned_trials(part.spec) for part in (*loaded.stages, loaded))
    if count > TRIAL_CAP:
        raise SpecError(
            f"{loaded.path}: parameters: the sweep expands to {count:,} trials, more than "
            f"gapsweep plans in one sweep ({TRIAL_CAP:,}; GAPSWEEP_TRIAL_CAP); split it or use "
            "search: random with num_samples"
        )
    if count > MAX_TRIALS_WITHOUT_YES and not yes:
        raise SpecError(
            f"{loaded.path}: parameters: the sweep expands to {count:,} trials, more than "
            f"{MAX_TRIALS_WITHOUT_YES:,} (GAPSWEEP_MAX_TRIALS); pass --yes to go on"
        )


def expand(loaded: LoadedSpec) -> Plan:
    """All trials of the spec, in a stable order; raises SpecError listing every invalid value.

    Callers check the trial count first (check_trial_count); the hard cap holds here too."""
    spec = loaded.spec
    check_trial_count(loaded, yes=True)
    # An Optuna study draws its trials as it runs; its space's corners are checked now.
    assignments = _corners(spec) if spec.search == "optuna" else _assignments(spec)
    model = TRAINERS[spec.trainer].config_model
    trials: list[Trial] = []
    problems: list[str] = []
    seen: set[str] = set()
    for varied in assignments:
        try:
            config = model.model_validate(set_paths(spec.base, varied))
        except ValidationError as exc:
            problems += _value_problems(exc, varied, str(loaded.path))
            continue
        problems += device_problems(spec, config, str(loaded.path))
        problems += budget_problems(config, str(loaded.path), varied)
        key = trial_key(spec.trainer, config)
        if key in seen:
            continue
        seen.add(key)
        trials.append(Trial(key=key, index=len(trials), config=config, varied=varied))
    stages = []
    for stage in loaded.stages:
        try:
            stages.append(expand(stage))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))
    if spec.search == "optuna":
        return Plan(spec=spec, trials=[], stages=tuple(stages))
    dropped = len(assignments) - len(trials)
    return Plan(spec=spec, trials=trials, duplicates_dropped=dropped, stages=tuple(stages))


def device_problems(spec: SweepSpec, config: BaseModel, source: str) -> list[str]:
    """A trial's `device` must agree with the GPU share the spec's resources give it."""
    device, gpu = getattr(config, "device", None), spec.resources.gpu
    if device == "cuda" and gpu == 0:
        return [
            f"{source}: device: cuda needs a GPU, but resources.gpu is 0; give each trial a GPU"
            " (resources.gpu: 1, or 0.25 to share one) or use device: auto"
        ]
    if device == "cpu" and gpu > 0:
        return [
            f"{source}: device: cpu with resources.gpu {gpu:g} would hold a GPU it never uses;"
            " set device: auto (or cuda), or resources.gpu: 0"
        ]
    return []


def new_trial(t: Trial) -> NewTrial:
    """The store's record of a planned trial."""
    from orchestrator.store.views import NewTrial  # SQLAlchemy: not for `validate`

    return NewTrial(
        key=t.key,
        name=t.name,
        position=t.index,
        config=t.config.model_dump(mode="json"),
        varied=t.varied,
    )


def trial_key(trainer: str, config: BaseModel) -> str:
    """Content hash of the trainer name and the fully resolved config (defaults included)."""
    payload = json.dumps(
        {"trainer": trainer, "config": config.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def trial_name(varied: dict[str, Any]) -> str:
    leaves = [p.rsplit(".", 1)[-1] for p in varied]
    parts = []
    for (path, value), leaf in zip(varied.items(), leaves, strict=True):
        label = leaf if leaves.count(leaf) == 1 else path
        parts.append(f"{label}={format_value(value)}")
    name = " ".join(parts) or "trial"
    return name if len(name) <= TRIAL_NAME_CHARS else name[: TRIAL_NAME_CHARS - 3] + "..."


# Repeats, not settings: what the figures and `compare` average over by default.
SEED_PATHS = ("seed", "model.init.seed")


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted names: {"loss": {"temperature": 0.1}} -> {"loss.temperature": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _assignments(spec: SweepSpec) -> list[dict[str, Any]]:
    import numpy as np  # only random search needs it; keeps `orchestrator validate` quick

    rng = np.random.default_rng(spec.seed)
    grid_paths = [p for p, d in spec.parameters.items() if d.kind == "grid"]
    drawn_paths = [p for p, d in spec.parameters.items() if d.kind != "grid"]
    grid_values = [spec.parameters[p].grid or [] for p in grid_paths]
    out = []
    for point in itertools.product(*grid_values):
        for _ in range(spec.num_samples):
            draws = {p: _draw(spec.parameters[p], rng) for p in drawn_paths}
            fixed = dict(zip(grid_paths, point, strict=True))
            out.append({p: {**fixed, **draws}[p] for p in spec.parameters})
    return out


def _draw(domain: Domain, rng: Generator) -> Any:
    if domain.choice is not None:
        return domain.choice[int(rng.integers(len(domain.choice)))]
    if domain.uniform is not None:
        return float(rng.uniform(*domain.uniform))
    if domain.loguniform is not None:
        low, high = domain.loguniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if domain.randint is not None:
        return int(rng.integers(*domain.randint))
    raise ValueError(f"{domain.kind} values are enumerated, not drawn")


def _value_problems(exc: ValidationError, varied: dict[str, Any], source: str) -> list[str]:
    """Name the swept parameter whose value is invalid, so one bad grid value reads as one line."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        owner = next((p for p in varied if loc == p or loc.startswith(p + ".")), None)
        if owner is not None:
            lines.append(
                f"{source}: parameters.{owner}: value {varied[owner]!r}: {loc}: {msg}"
                if loc != owner
                else f"{source}: parameters.{owner}: value {varied[owner]!r}: {msg}"
            )
        else:
            lines.append(f"{source}: {loc}: {msg} (with {trial_name(varied)})")
    return lines


def _corners(spec: SweepSpec) -> list[dict[str, Any]]:
    """For a space drawn as the sweep runs: each parameter at each end of its range (each of a
    choice's values), the others at their low ends, so that a value no trial could take is
    refused before anything starts."""
    ends = {path: domain_ends(domain) for path, domain in spec.parameters.items()}
    low = {path: values[0] for path, values in ends.items()}
    return [{**low, path: value} for path, values in ends.items() for value in values]


def domain_ends(domain: Domain) -> list[Any]:
    """A drawn domain's extreme values (every value of a choice), low end first."""
    if domain.choice is not None:
        return list(domain.choice)
    if domain.randint is not None:
        return [domain.randint[0], domain.randint[1] - 1]
    bounds = domain.uniform or domain.loguniform
    return list(bounds) if bounds is not None else list(domain.grid or [])


def trials_to_run(plan: Plan, statuses: dict[str, str], rerun_failed: bool) -> list[Trial]:
    """Completed and pruned trials never run again; failed ones only when asked to."""
    skip = {"completed", "pruned"} if rerun_failed else {"completed", "pruned", "failed"}
    return [t for t in plan.trials if statuses.get(t.key, "pending") not in skip]
