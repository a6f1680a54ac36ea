"""Warm starts named by sweep: resolve `model.init.warm_start: {sweep, trial}` of every planned
trial into the final checkpoint of that trial of another sweep, from the results store.

A trial's key is computed before resolution, so it names the source (sweep and trial), not the
folder its checkpoint happens to be in on this machine.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel

from orchestrator.errors import InputError, SpecError
from orchestrator.plan import Plan, Trial
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import TrialView

BEST = "best"


def resolve_warm_starts(plan: Plan, store: ResultsStore) -> Plan:
    """The plan with every warm start's checkpoint filled in; SpecError lists every source that
    does not exist or has not completed."""
    problems: list[str] = []
    resolved: list[Trial] = []
    cache: dict[tuple[str, str], str] = {}
    for trial in plan.trials:
        source = _warm_start(trial.config)
        if source is None:
            resolved.append(trial)
            continue
        try:
            if source not in cache:
                cache[source] = checkpoint_of(store, *source)
        except SpecError as exc:
            problems += exc.problems
            continue
        resolved.append(replace(trial, config=_with_checkpoint(trial.config, cache[source])))
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))
    return replace(plan, trials=resolved)


def has_warm_starts(plan: Plan) -> bool:
    return any(_warm_start(t.config) is not None for t in plan.trials)


def checkpoint_of(store: ResultsStore, sweep: str, trial: str) -> str:
    """The final checkpoint folder of `trial` (a key, or `best` by the sweep's metric)."""
    where = f"model.init.warm_start: sweep {sweep!r}"
    view = store.get_sweep(sweep)
    if view is None:
        raise SpecError(f"{where} is not in the results store; submit that sweep first")
    try:
        trials = store.trials(sweep)
    except InputError:
        raise SpecError(f"{where} is not in the results store; submit that sweep first") from None
    latest = store.versions.get(sweep)  # the best of the sweep as it is now, not of old edits
    if latest is not None and trial == BEST:
        current = set(latest.keys)
        trials = [t for t in trials if t.key in current]
    chosen = _best(trials, view.metric_name, view.metric_mode, where) if trial == BEST else None
    if chosen is None:
        chosen = next((t for t in trials if t.key == trial), None)
    if chosen is None:
        keys = ", ".join(t.key for t in trials[:5]) + (", ..." if len(trials) > 5 else "")
        raise SpecError(f"{where} has no trial {trial!r}; its keys: {keys}, or use best")
    if chosen.status != "completed" or not chosen.checkpoint_path:
        raise SpecError(
            f"{where}: trial {chosen.key} ({chosen.name}) has not completed (status "
            f"{chosen.status}); submit that sweep until it does"
        )
    return chosen.checkpoint_path


def _best(trials: list[TrialView], metric: str, mode: str, where: str) -> TrialView:
    done = [t for t in trials if t.status == "completed" and metric in t.metrics]
    if not done:
        raise SpecError(f"{where} has no completed trial with metric {metric} to pick the best")
    pick = min if mode == "min" else max
    return pick(done, key=lambda t: t.metrics[metric])


def _warm_start(config: BaseModel) -> tuple[str, str] | None:
    source = getattr(getattr(getattr(config, "model", None), "init", None), "warm_start", None)
    return None if source is None else (str(source.sweep), str(source.trial))


def _with_checkpoint(config: BaseModel, path: str) -> BaseModel:
    model = getattr(config, "model")  # noqa: B009  (configs without a model have no warm start)
    init = model.init.model_copy(update={"checkpoint": path})
    return config.model_copy(update={"model": model.model_copy(update={"init": init})})
