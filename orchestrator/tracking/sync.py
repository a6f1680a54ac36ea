"""Opening MLflow for a sweep, closing its parent run with a summary, and `orchestrator sync`:
MLflow brought up to date from the results store after the fact."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from orchestrator.errors import InputError
from orchestrator.pareto import Objective, objectives_of, pareto_front
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import TrialView
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror


def open_mlflow(uri: str, sweep: str) -> tuple[MlflowTracker, str]:
    """The tracker and the sweep's experiment id (created on first use)."""
    tracker = MlflowTracker(uri)
    return tracker, tracker.experiment_for(sweep)


def finish_parent(
    mirror: MlflowMirror, run_id: str, views: list[TrialView], objectives: Sequence[Objective]
) -> None:
    """The parent run's summary metrics (counts, the best value) and its final status; the
    best trial's run (with several objectives, the Pareto front's) tagged gapsweep.best."""
    metric, mode = objectives[0]
    completed = [v for v in views if v.status == "completed" and metric in v.metrics]
    summary = {
        "trials_completed": float(len(completed)),
        "trials_failed": float(sum(v.status == "failed" for v in views)),
        "trials_stopped": float(sum(v.status == "stopped" for v in views)),
        "trials_pruned": float(sum(v.status == "pruned" for v in views)),
    }
    if completed:
        values = [v.metrics[metric] for v in completed]
        summary[f"best_{metric}"] = min(values) if mode == "min" else max(values)
    status = "FAILED" if summary["trials_failed"] else "FINISHED"
    if summary["trials_stopped"]:
        status = "KILLED"
    mirror.finish_parent(run_id, summary, status)
    for best in pareto_front(views, objectives):
        if best.mlflow_run_id is not None:
            mirror.tag_run(best.mlflow_run_id, {"gapsweep.best": "true"})


def sync_mlflow(
    store: ResultsStore, sweep: str, mlflow_uri: str, warn: Callable[[str], None]
) -> int:
    """Bring MLflow up to date with the store for one sweep; returns trials still behind."""
    view = store.get_sweep(sweep)
    if view is None:
        raise InputError(f"no sweep named {sweep!r} in the results store")
    tracker, experiment_id = open_mlflow(mlflow_uri, sweep)
    parent = tracker.start_sweep_run(
        experiment_id, sweep, store.stored_spec(sweep)[0], view.mlflow_run_id
    )
    store.set_sweep_mlflow(sweep, experiment_id, parent)
    mirror = MlflowMirror(tracker, store, sweep, (experiment_id, parent), warn)
    behind = mirror.sync_all()
    spec_text = store.stored_spec(sweep)[0]
    objectives = objectives_of(spec_text, (view.metric_name, view.metric_mode))
    finish_parent(mirror, parent, store.trials(sweep), objectives)
    return behind
