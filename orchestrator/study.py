"""`search: optuna`: an Optuna study asked and told by the sweep's driver, as a Ray Tune Searcher.

Keys stay content-addressed: a suggested config is validated and keyed when it is suggested,
and one whose key the sweep already holds as finished is told to the study from the store,
not run again. The study lives in the results store: it is rebuilt at each submit from the
sweep's trials (their settings, final metrics, status and the sampler's saved state), so a
study resubmitted or resumed after its driver died goes on where it stopped, and `num_samples`
counts every trial the sweep holds. docs/architecture.md says why this is not Tune's
OptunaSearch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState
from pydantic import BaseModel, ValidationError
from ray.tune.search import Searcher

from orchestrator.overrides import set_paths
from orchestrator.plan import Plan, Trial, domain_ends, new_trial, trial_key
from orchestrator.result import STEP
from orchestrator.trainer_registry import TRAINERS

if TYPE_CHECKING:
    from orchestrator.spec import SweepSpec
    from orchestrator.store.repository import ResultsStore
    from orchestrator.store.views import TrialView

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the live table says what happens

FINAL = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
MAX_REPEATS = 64  # suggestions in a row that the sweep already holds: the space is used up


def search_space(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Each drawn parameter as an Optuna distribution; a choice by the index of its value (its
    values may be mappings, which Optuna cannot hold)."""
    space: dict[str, BaseDistribution] = {}
    for path, domain in spec.parameters.items():
        if domain.choice is not None:
            space[path] = CategoricalDistribution(list(range(len(domain.choice))))
        elif domain.uniform is not None:
            space[path] = FloatDistribution(*domain.uniform)
        elif domain.loguniform is not None:
            space[path] = FloatDistribution(*domain.loguniform, log=True)
        elif domain.randint is not None:
            space[path] = IntDistribution(domain.randint[0], domain.randint[1] - 1)
    return space


def varied_of(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The trial's settings (dotted path -> value) from Optuna's params."""
    return {
        path: spec.parameters[path].choice[value]  # type: ignore[index]
        if spec.parameters[path].choice is not None
        else value
        for path, value in params.items()
    }


def params_of(spec: SweepSpec, varied: dict[str, Any]) -> dict[str, Any] | None:
    """Optuna's params of a stored trial's settings; None when they are not of this space."""
    params: dict[str, Any] = {}
    for path, domain in spec.parameters.items():
        if path not in varied:
            return None
        value = varied[path]
        if domain.choice is not None:
            if value not in domain.choice:
                return None
            value = domain.choice.index(value)
        params[path] = value
    return params


def make_sampler(spec: SweepSpec, told: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded by the spec's seed and the trials told so far: a study
    rebuilt after a restart draws on, instead of drawing its first points again."""
    seed = spec.seed + told
    name = spec.sampler or "tpe"
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # One sequence: its next point is found from the trials the rebuilt study holds.
        return optuna.samplers.QMCSampler(seed=spec.seed, scramble=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "nsgaii":
        # Generations small enough that a sweep's budget sees several of them.
        population = max(4, min(50, spec.num_samples // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, spec.num_samples // 3))


@dataclass(frozen=True)
class Outcome:
    """What the study is told of one finished trial."""

    state: TrialState
    values: list[float] | None
    constraints: dict[str, float]


def outcome(spec: SweepSpec, status: str, metrics: dict[str, float]) -> Outcome:
    """A finished trial's outcome for the study: its objectives (FAIL when one is missing or
    not finite) and how far past each constraint it is."""
    values = [metrics.get(m.name, math.nan) for m in spec.objectives]
    state = FINAL.get(status, TrialState.FAIL)
    if state is TrialState.COMPLETE and not all(math.isfinite(v) for v in values):
        state = TrialState.FAIL
    kept = values if state is TrialState.COMPLETE else None
    constraints = {
        str(c): c.violation(metrics[c.metric])
        for c in spec.parsed_constraints
        if math.isfinite(metrics.get(c.metric, math.nan))
    }
    return Outcome(state, kept, constraints)


def rebuild_study(spec: SweepSpec, stored: list[TrialView]) -> optuna.Study:
    """A study holding every finished trial of the sweep, in the order they were registered,
    with the state its sampler saved with each."""
    finished = [t for t in stored if t.status in FINAL]
    directions = [
        StudyDirection.MINIMIZE if m.mode == "min" else StudyDirection.MAXIMIZE
        for m in spec.objectives
    ]
    study = optuna.create_study(directions=directions, sampler=make_sampler(spec, len(finished)))
    space = search_space(spec)
    for view in finished:
        params = params_of(spec, view.varied)
        if params is None:
            continue
        told = outcome(spec, view.status, view.metrics)
        study.add_trial(
            optuna.trial.create_trial(
                state=told.state,
                values=told.values,
                params=params,
                distributions=space,
                system_attrs=dict(view.search_state or {}),
                constraints=told.constraints or None,
            )
        )
    return study


class StudyRecords:
    """The searcher's side of the results store: a new trial registered (in the sweep, its
    version's keys and the live table), a stored trial looked up, a sampler's state kept."""

    def __init__(
        self,
        store: ResultsStore,
        sweep: str,
        version: tuple[int, tuple[str, str, dict[str, Any] | None]],
        keys: list[str],
        shown: Callable[[Trial], None],
    ) -> None:
        self.store, self.sweep, self.version = store, sweep, version
        self.keys, self.shown = list(keys), shown
        self.held = set(keys)

    def register(self, trial: Trial) -> str:
        """Add the trial to the sweep and its version; its stored status, which is final when
        an earlier version of the sweep already ran the same config (one row per key)."""
        status = self.store.register_trials(self.sweep, [new_trial(trial)])[trial.key]
        self.keys.append(trial.key)
        self.held.add(trial.key)
        self.store.versions.record(self.sweep, self.version[0], self.version[1], self.keys)
        self.shown(trial)
        return status

    def lookup(self, key: str) -> TrialView:
        return self.store.trial(self.sweep, key)

    def save_state(self, key: str, state: dict[str, Any]) -> None:
        self.store.set_search_state(self.sweep, key, state)


class StudySearcher(Searcher):
    """Tune's searcher of an Optuna study (see the module's docstring). Trials the sweep holds
    unfinished (a driver died) run first; then new ones, while the budget lasts."""

    def __init__(
        self,
        spec: SweepSpec,
        stored: list[TrialView],
        records: StudyRecords,
        rerun_failed: bool = False,
    ) -> None:
        super().__init__(metric=spec.primary.name, mode=spec.primary.mode)
        self.spec, self.study, self.records = spec, rebuild_study(spec, stored), records
        skip = {"completed", "pruned"} if rerun_failed else set(FINAL)
        self.again = [t for t in stored if t.status not in skip]
        self.held = len(stored)  # trials of the budget already spent
        self.live: dict[str, tuple[optuna.trial.Trial | None, str]] = {}  # Tune's id -> key
        self.steps: dict[str, int] = {}  # Tune's id -> the trial's steps when not cut short
        # Trials ended in this session, by key: their end may still wait for the store.
        self.ended: dict[str, tuple[str, dict[str, float]]] = {}
        self.space = search_space(spec)
        self.rerun_failed = rerun_failed

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm for `Tuner.restore`, which gapsweep does not use:
        # a study resumes from the results store. The store's engine cannot be pickled.
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True  # the spec's objectives rule; Tune's metric and mode are not used here

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.again:
            view = self.again.pop(0)
            self.live[trial_id] = (self._asked_for(view), view.key)
            self.steps[trial_id] = trial_steps(self._config(view.varied))
            return {"trial_key": view.key, "config_json": _json(view.config)}
        for _ in range(MAX_REPEATS):
            if self.held >= self.spec.num_samples:
                return Searcher.FINISHED  # type: ignore[return-value]
            asked = self.study.ask(self.space)
            try:
                trial = self._trial(varied_of(self.spec, asked.params))
            except ValidationError:  # a combination the trial config refuses: not a trial
                self.study.tell(asked, state=TrialState.FAIL)
                continue
            if self._answered(asked, trial.key):
                continue
            status = self.records.register(trial)
            self.held += 1
            if status in FINAL and (status != "failed" or not self.rerun_failed):
                found = self.records.lookup(trial.key)  # an earlier version ran this config
                self._tell(asked, found.status, found.metrics)
                continue
            self.live[trial_id] = (asked, trial.key)
            self.steps[trial_id] = trial_steps(trial.config)
            return {"trial_key": trial.key, "config_json": trial.config_json}
        return Searcher.FINISHED  # type: ignore[return-value]

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        asked, key = self.live.pop(trial_id, (None, ""))
        if asked is None:
            return
        result = result or {}
        step, steps = result.get(STEP), self.steps.pop(trial_id, None)
        short = isinstance(step, int) and steps is not None and step < steps
        status = "failed" if error else "pruned" if short else "completed"
        metrics = {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
        self._tell(asked, status, metrics)
        self.ended[key] = (status, metrics)
        frozen = self.study.get_trials(deepcopy=False)[asked.number]
        if frozen.system_attrs:
            self.records.save_state(key, dict(frozen.system_attrs))

    def _tell(self, asked: optuna.trial.Trial, status: str, metrics: dict[str, float]) -> None:
        told = outcome(self.spec, status, metrics)
        for name, value in told.constraints.items():
            asked.set_constraint(name, value)
        self.study.tell(asked, told.values, state=told.state)

    def _asked_for(self, view: TrialView) -> optuna.trial.Trial | None:
        """A study trial for a stored one run again, its params fixed to the stored settings."""
        params = params_of(self.spec, view.varied)
        if params is None:
            return None
        self.study.enqueue_trial(params, skip_if_exists=False)
        return self.study.ask(self.space)

    def _answered(self, asked: optuna.trial.Trial, key: str) -> bool:
        """Whether this version already holds the suggested config: then it is told from what
        is known of it (a duplicate of one still running is told as failed), not run again."""
        if key not in self.records.held:
            return False
        if key in self.ended:
            self._tell(asked, *self.ended[key])
        elif key in {k for _, k in self.live.values()}:
            self._tell(asked, "running", {})
        else:
            found = self.records.lookup(key)
            self._tell(asked, found.status, found.metrics)
        return True

    def _trial(self, varied: dict[str, Any]) -> Trial:
        config = self._config(varied)
        return Trial(trial_key(self.spec.trainer, config), self.held, config, varied)

    def _config(self, varied: dict[str, Any]) -> BaseModel:
        model = TRAINERS[self.spec.trainer].config_model
        return model.model_validate(set_paths(self.spec.base, varied))


def study_steps(spec: SweepSpec) -> int:
    """The steps of a study's trial with every parameter at its low end: Hyperband's horizon
    before the study has drawn any."""
    low = {
        path: ends[0] for path, ends in ((p, domain_ends(d)) for p, d in spec.parameters.items())
    }
    model = TRAINERS[spec.trainer].config_model
    try:
        return trial_steps(model.model_validate(set_paths(spec.base, low)))
    except ValidationError:
        return 0


def trial_steps(config: BaseModel) -> int:
    """A trial's steps when it trains to its end (0 for a trainer that does not say)."""
    return int(getattr(config, "total_steps", 0) or 0)


def longest_steps(plan: Plan) -> int:
    """The longest trial's steps (a study's before it drew any, from its low ends)."""
    drawn = max((trial_steps(t.config) for t in plan.trials), default=0)
    return max(drawn, study_steps(plan.spec)) if plan.spec.search == "optuna" else drawn


def _json(config: dict[str, Any]) -> str:
    import json

    return json.dumps(config)


def stored_plan(plan: Plan, store: ResultsStore, version: int) -> Plan:
    """The plan of an Optuna sweep: the trials its version `version` has drawn so far (none for
    a new version), to be shown, counted and resumed as a grid's are."""
    latest = store.versions.get(plan.spec.name)
    if latest is None or latest.number != version:
        return plan
    views = {v.key: v for v in store.trials(plan.spec.name)}
    model = TRAINERS[plan.spec.trainer].config_model
    trials = [
        Trial(key, index, model.model_validate(views[key].config), views[key].varied)
        for index, key in enumerate(k for k in latest.keys if k in views)
    ]
    return replace(plan, trials=trials)


def optuna_search(
    plan: Plan, store: ResultsStore, shown: Callable[[Trial], None], rerun_failed: bool
) -> Searcher:
    """Tune's search algorithm for the sweep: the study's searcher, as many trials at once as
    the cluster's CPUs hold (or max_concurrent_trials); more in flight would leave TPE
    drawing blind."""
    import ray
    from ray.tune.search import ConcurrencyLimiter

    spec = plan.spec
    version = store.versions.get(spec.name)
    assert version is not None, "the submit recorded the sweep's version first"
    written = (version.spec_hash, version.spec_text, version.overrides)
    records = StudyRecords(store, spec.name, (version.number, written), list(version.keys), shown)
    held = set(version.keys)
    stored = [t for t in store.trials(spec.name) if t.key in held]
    cluster: Any = ray.cluster_resources  # untyped in Ray
    fits = int(cluster().get("CPU", 1) // spec.resources.cpu)
    concurrency = spec.max_concurrent_trials or max(1, fits)
    return ConcurrencyLimiter(StudySearcher(spec, stored, records, rerun_failed), concurrency)


def draws_left(plan: Plan) -> bool:
    """Whether an Optuna sweep's budget has trials left to draw."""
    return plan.spec.search == "optuna" and len(plan.trials) < plan.spec.num_samples
