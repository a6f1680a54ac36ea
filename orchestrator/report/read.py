"""A stored sweep read back for a reader: its trials under today's metric names, a metric's
step series, and the notes a reader should see. `orchestrator results`, `compare`, `series` and
orchestrator.api all read through here; each says the notes its own way (stderr, a warning)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from orchestrator.errors import InputError
from orchestrator.pareto import Objective, objectives_of, pareto_front
from orchestrator.report.legacy_names import metric_held, stored_name, todays_names

if TYPE_CHECKING:  # the store imports SQLAlchemy, which `results --help` does not need
    from orchestrator.store.repository import ResultsStore
    from orchestrator.store.views import SweepView, TrialView


@dataclass(frozen=True)
class StoredSweep:
    view: SweepView
    trials: list[TrialView]  # in plan order, their metrics under today's names
    metric: str  # the name the trials hold the metric asked for by ("" when none was asked)
    notes: tuple[str, ...] = ()  # old names read as new ones: say so, once
    objectives: tuple[Objective, ...] = ()  # the spec's, (name, mode): one, or several

    def pareto(self) -> list[TrialView]:
        """The best trial, or with several objectives the Pareto front (orchestrator/pareto.py)."""
        return pareto_front(self.trials, self.objectives)


@dataclass(frozen=True)
class SeriesPoint:
    key: str
    name: str  # the trial's name (`temperature=0.01 seed=1`)
    step: int
    value: float


def read_sweep(
    results_db: str, sweep: str, metric: str | None = "", version: int | None = None
) -> StoredSweep:
    """The trials of version `version` of the sweep (the latest when None) from the store at
    `results_db`, and the name they hold `metric` by (None: the sweep's own metric; "": none
    asked); an InputError when there is no store there, no such sweep in it (naming the sweeps
    there are) or no such version."""
    from orchestrator.store.repository import ResultsStore

    with ResultsStore.open_existing(results_db) as store:
        view, stored, said = version_trials(store, sweep, version)
        objectives = _objectives(store, view, version)
    asked = view.metric_name if metric is None else metric
    return replace(_under_todays_names(view, stored, asked, said), objectives=objectives)


def read_series(
    results_db: str, sweep: str, metric: str, version: int | None = None
) -> tuple[StoredSweep, list[SeriesPoint]]:
    """Every trial's series of `metric` (today's name or an old one), trial by trial in plan
    order, step by step; an InputError when no trial of the sweep reported it."""
    from orchestrator.store.repository import ResultsStore

    with ResultsStore.open_existing(results_db) as store:
        view, stored, said = version_trials(store, sweep, version)
        read = _under_todays_names(view, stored, metric, said)
        points = [
            SeriesPoint(t.key, t.name, step, value)
            for t in stored
            for step, value in store.metric_series(sweep, t.key, stored_name(t, read.metric))
        ]
    if not points and not any(read.metric in t.metrics for t in read.trials):
        known = sorted({m for t in read.trials for m in t.metrics}) or ["none yet"]
        raise InputError(
            f"metric {metric}: no trial of sweep {sweep!r} reported it; known: {', '.join(known)}"
        )
    return read, points


def _objectives(store: ResultsStore, view: SweepView, version: int | None) -> tuple[Objective, ...]:
    chosen = store.versions.read(view.name, version)
    text = store.stored_spec(view.name)[0] if chosen is None else chosen.spec_text
    return tuple(objectives_of(text, (view.metric_name, view.metric_mode)))


def version_trials(
    store: ResultsStore, sweep: str, version: int | None
) -> tuple[SweepView, list[TrialView], tuple[str, ...]]:
    """The sweep and the trials of one version of its spec (the latest when None), with a note
    naming the version read where the sweep has several (orchestrator/versions.py)."""
    view, stored = store.sweep_and_trials(sweep)
    chosen = store.versions.read(sweep, version)
    if chosen is None:
        return view, stored, ()
    keys = set(chosen.keys)
    numbers = store.versions.numbers(sweep)
    said = (
        ()
        if numbers == [chosen.number]
        else (
            f"sweep {sweep!r}: read version {chosen.number} of {max(numbers)} "
            f"({len(keys)} trials); --version N reads another",
        )
    )
    return view, [t for t in stored if t.key in keys], said


def _under_todays_names(
    view: SweepView, stored: list[TrialView], metric: str, said: tuple[str, ...] = ()
) -> StoredSweep:
    read = todays_names(stored)
    name, asked = metric_held(metric, read.trials) if metric else (metric, None)
    return StoredSweep(view, read.trials, name, (*said, *read.notes, *([asked] if asked else [])))
