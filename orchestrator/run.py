"""Running a planned sweep on Ray Tune, with the recorder as the one writer of results."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from orchestrator.errors import ServiceError
from orchestrator.plan import Plan, Trial
from orchestrator.progress import SweepProgress
from orchestrator.spec import LoadedSpec
from orchestrator.store.repository import NewTrial, ResultsStore, TrialView
from orchestrator.tracking import MlflowTracker


@dataclass(frozen=True)
class Settings:
    """Where things live; the defaults are relative to the working directory (DESIGN.md §4)."""

    mlflow_uri: str = "sqlite:///mlflow.db"
    results_db: str = "sqlite:///results.db"
    storage: Path = Path("runs")
    address: str | None = None


@dataclass(frozen=True)
class SweepOutcome:
    trials: list[TrialView]
    ran: int
    skipped: int

    @property
    def failed(self) -> list[TrialView]:
        return [t for t in self.trials if t.status == "failed"]


def submit(
    loaded: LoadedSpec, plan: Plan, settings: Settings, console: Console, store: ResultsStore
) -> SweepOutcome:
    spec = plan.spec
    tracker = MlflowTracker(settings.mlflow_uri)
    experiment_id = tracker.experiment_for(spec.name)
    sweep = store.upsert_sweep(
        spec.name, spec.trainer, loaded.text, loaded.spec_hash, (spec.metric.name, spec.metric.mode)
    )
    statuses = store.register_trials(spec.name, [_new_trial(t) for t in plan.trials])
    todo = [t for t in plan.trials if statuses[t.key] != "completed"]
    parent = tracker.start_sweep_run(experiment_id, spec.name, loaded.text, sweep.mlflow_run_id)
    store.set_sweep_mlflow(spec.name, experiment_id, parent)

    progress = SweepProgress(spec.name, _total_steps(plan))
    for t in plan.trials:
        progress.add(
            t.key, t.name, t.varied, "skipped" if statuses[t.key] == "completed" else "pending"
        )
    if len(todo) < len(plan.trials):
        console.print(
            f"{len(plan.trials) - len(todo)} of {len(plan.trials)} trials already completed "
            f"in the results store; running the other {len(todo)}."
        )
    if todo:
        with console.status("starting Ray..." if settings.address is None else "joining Ray..."):
            _init_ray(settings.address)
        try:
            with Live(progress, console=console, refresh_per_second=2, transient=False):
                _run_tune(plan, todo, settings, store, tracker, (experiment_id, parent), progress)
        finally:
            # Trials Tune stopped without a verdict (Ctrl-C, driver shutdown) are not left
            # looking as if they were still running.
            store.stop_unfinished(spec.name, [t.key for t in todo])
            _shutdown_local_ray(settings.address)
    views = store.trials(spec.name)
    _finish_parent(tracker, parent, views, spec.metric.name, spec.metric.mode)
    return SweepOutcome(trials=views, ran=len(todo), skipped=len(plan.trials) - len(todo))


def _run_tune(
    plan: Plan,
    todo: list[Trial],
    settings: Settings,
    store: ResultsStore,
    tracker: MlflowTracker,
    mlflow_ids: tuple[str, str],
    progress: SweepProgress,
) -> None:
    # Tune's default CSV/JSON/TensorBoard loggers duplicate what the recorder writes, and its
    # console output would interleave with the live table.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    from orchestrator.recorder import Recorder
    from orchestrator.trainable import run_trial

    spec = plan.spec
    recorder = Recorder(spec.name, todo, store, tracker, mlflow_ids, progress)
    checkpoints = {v.key: v.checkpoint_path for v in store.trials(spec.name)}
    trainable = tune.with_parameters(
        run_trial,
        trainer=spec.trainer,
        configs={t.key: t.config_json for t in todo},
        resume={t.key: path for t in todo if (path := checkpoints.get(t.key))},
    )
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"trial_key": tune.grid_search([t.key for t in todo])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials,
            # A fresh worker per trial would re-import torch and transformers every time.
            reuse_actors=True,
            trial_dirname_creator=lambda trial: str(trial.config["trial_key"]),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(settings.storage.resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[recorder],
            verbose=0,
            # The latest checkpoint resumes a retry; the one before stays as a fallback.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    tuner.fit()


def _shutdown_local_ray(address: str | None) -> None:
    import ray

    if address is None and ray.is_initialized():
        ray.shutdown()


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise ServiceError(f"cannot connect to the Ray cluster at {where}: {exc}") from None


def _new_trial(t: Trial) -> NewTrial:
    return NewTrial(
        key=t.key,
        name=t.name,
        position=t.index,
        config=t.config.model_dump(mode="json"),
        varied=t.varied,
    )


def _total_steps(plan: Plan) -> int | None:
    """The step count shown as `step/total`, when every trial has the same one."""
    steps = {getattr(t.config, "total_steps", None) for t in plan.trials}
    return steps.pop() if len(steps) == 1 else None


def _finish_parent(
    tracker: MlflowTracker, run_id: str, views: list[TrialView], metric: str, mode: str
) -> None:
    completed = [v for v in views if v.status == "completed" and metric in v.metrics]
    summary = {
        "trials_completed": float(len(completed)),
        "trials_failed": float(sum(v.status == "failed" for v in views)),
    }
    if completed:
        values = [v.metrics[metric] for v in completed]
        summary[f"best_{metric}"] = min(values) if mode == "min" else max(values)
    tracker.log_metrics(run_id, 0, summary)
    failed = any(v.status == "failed" for v in views)
    tracker.end_run(run_id, "FAILED" if failed else "FINISHED")
