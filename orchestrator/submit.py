"""The library behind the sweep commands: what `validate`, `plan`, `submit` and `resume` do,
each one function of a spec (or a stored sweep) and a settings object. The CLI only parses,
calls one of these and prints; a notebook can call them the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GapsweepError, SweepFailedError
from orchestrator.plan import Plan, check_trial_count, expand
from orchestrator.settings import SubmitSettings
from orchestrator.spec import LoadedSpec, load_spec, load_spec_text

if TYPE_CHECKING:  # Ray, SQLAlchemy and rich load only when a command needs them: validate is quick
    from rich.console import Console

    from orchestrator.run import SweepOutcome
    from orchestrator.store.lease import Driver

Overrides = Mapping[str, Any] | None  # `--set` path -> value (orchestrator/overrides.py)


@dataclass(frozen=True)
class PlanPreview:
    """A spec's trials and the status each has in the results store ("new" when not stored)."""

    plan: Plan
    statuses: dict[str, str]


def validate(path: Path, overrides: Overrides = None, yes: bool = False) -> Plan:
    """The spec at `path` with `--set` overrides, checked with every trial it expands to.

    The number of trials is counted before anything is expanded: a sweep over the limit without
    `yes`, or over the hard cap, is refused at once (orchestrator/plan.py)."""
    loaded = load_spec(path, overrides)
    check_trial_count(loaded, yes)
    return expand(loaded)


def preview(
    path: Path, results_db: str, overrides: Overrides = None, yes: bool = False
) -> PlanPreview:
    """The plan and what a submit would do with each trial; refuses warm starts whose source
    has not completed, as submit would."""
    from orchestrator.store.engine import missing_sqlite_file
    from orchestrator.store.repository import ResultsStore
    from orchestrator.warm_start import has_warm_starts, resolve_warm_starts

    plan = validate(path, overrides, yes)
    # A staged sweep's trials warm-start from its own last stage, which a submit runs first.
    looked_up = has_warm_starts(plan) and not plan.stages
    if missing_sqlite_file(results_db) and not looked_up:
        return PlanPreview(plan, {})  # nothing stored yet, and nothing to look up
    with ResultsStore.open_existing(results_db) as store:
        if looked_up:
            resolve_warm_starts(plan, store)
        stored = store.get_sweep(plan.spec.name) is not None
        statuses = {t.key: t.status for t in store.trials(plan.spec.name)} if stored else {}
    return PlanPreview(plan, statuses)


def submit(
    path: Path, settings: SubmitSettings, console: Console, overrides: Overrides = None
) -> SweepOutcome:
    """Run every trial of the spec not yet completed; the report, if asked for, is written at
    the end whatever happened."""
    return _run_with_report(load_spec(path, overrides), settings, console)


def resume(sweep: str, settings: SubmitSettings, console: Console) -> SweepOutcome:
    """Go on with an interrupted sweep, from the spec stored with it."""
    from orchestrator.store.repository import ResultsStore

    with ResultsStore.open_existing(settings.services.results_db) as store:
        text, overrides = store.stored_spec(sweep)
    loaded = load_spec_text(text, Path(f"<stored spec of {sweep}>"), overrides)
    return _run_with_report(loaded, settings, console)


def cancel(sweep: str, results_db: str) -> list[Driver]:
    """Ask the live driver of `sweep` (and of its stages), on whatever host it runs, to stop its
    trials as Ctrl-C would: through the results store, which its heartbeat thread reads every
    second. Returns the drivers asked; an InputError when none is live."""
    import os
    import socket

    from orchestrator.errors import InputError
    from orchestrator.store.repository import ResultsStore

    with ResultsStore.open_existing(results_db) as store:
        asked = store.drivers.cancel(sweep, f"{socket.gethostname()} pid {os.getpid()}")
        known = store.get_sweep(sweep) is not None
    if not asked:
        what = "has no live driver" if known else "is not in the results store"
        raise InputError(
            f"sweep {sweep!r} {what}: nothing to cancel (`orchestrator sweeps` lists live drivers)"
        )
    return asked


def _run_with_report(
    loaded: LoadedSpec, settings: SubmitSettings, console: Console
) -> SweepOutcome:
    check_trial_count(loaded, settings.yes)
    plan = expand(loaded)
    try:
        for stage, stage_plan in zip(loaded.stages, plan.stages, strict=True):
            _run_stage(stage, stage_plan, settings, console, plan.spec.name)
        return _run(loaded, plan, settings, console)
    finally:
        if settings.report_dir is not None and _stored(plan.spec.name, settings):
            from orchestrator.report.build import write_report

            mlflow_uri, results_db = settings.services.mlflow_uri, settings.services.results_db
            page, _ = write_report(plan.spec.name, settings.report_dir, results_db, mlflow_uri)
            console.print(f"report: {page}")


def _run_stage(
    stage: LoadedSpec, plan: Plan, settings: SubmitSettings, console: Console, sweep: str
) -> None:
    """One stage before the sweep's own trials; the sweep goes on only when all of it completed."""
    console.print(f"[bold]stage {stage.spec.name}[/] (the trials of {sweep} start from its best)")
    outcome = _run(stage, plan, settings, console)
    unfinished = len(outcome.failed) + len(outcome.stopped)
    if outcome.cancelled_by is not None:
        raise SweepFailedError(
            f"stage {stage.spec.name} was cancelled by `orchestrator cancel` "
            f"({outcome.cancelled_by}), so the trials of {sweep} did not start; go on with "
            f"`orchestrator submit` of the spec"
        )
    if unfinished:
        raise SweepFailedError(
            f"stage {stage.spec.name}: {unfinished} of {len(outcome.trials)} trials did not "
            f"complete, so the trials of {sweep} did not start; see `orchestrator status "
            f"{stage.spec.name}`, then submit the spec again (completed trials do not rerun)"
        )


def _stored(sweep: str, settings: SubmitSettings) -> bool:
    """Whether the sweep got as far as the store (a run refused before has no report)."""
    from orchestrator.store.engine import missing_sqlite_file
    from orchestrator.store.repository import ResultsStore

    results_db = settings.services.results_db
    if missing_sqlite_file(results_db):
        return False
    try:
        with ResultsStore(results_db) as store:
            return store.get_sweep(sweep) is not None
    except GapsweepError:
        return False  # the store is what failed: the error in flight says so


def _run(
    loaded: LoadedSpec, plan: Plan, settings: SubmitSettings, console: Console
) -> SweepOutcome:
    from orchestrator.preflight import check_services
    from orchestrator.run import run_sweep
    from orchestrator.store.repository import ResultsStore
    from orchestrator.warm_start import resolve_warm_starts

    spec = plan.spec
    if spec.search == "optuna":
        sampler = spec.sampler or "tpe"
        console.print(
            f"sweep [bold]{spec.name}[/]: an Optuna study ({sampler}) of {spec.num_samples} trials"
        )
    else:
        console.print(f"sweep [bold]{spec.name}[/]: {len(plan.trials)} trials")
    services = settings.services
    check_services(services.mlflow_uri, services.results_db, services.address)
    with ResultsStore(services.results_db) as store:
        plan = resolve_warm_starts(plan, store)
        return run_sweep(loaded, plan, settings, console, store)
