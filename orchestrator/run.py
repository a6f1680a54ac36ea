"""Running a planned sweep on Ray Tune under the sweep's lease, with the recorder as the one
writer of results and the MLflow mirror beside it."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

# Ray Tune reads these when it is imported, so they are set before anything imports it: its
# default CSV/JSON/TensorBoard loggers would duplicate what the recorder writes, and its console
# output would interleave with the live table.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from ray.tune import Callback
from rich.console import Console
from rich.live import Live

from orchestrator.errors import ServiceError
from orchestrator.plan import Plan, Trial
from orchestrator.progress import SweepProgress
from orchestrator.recorder import Recorder
from orchestrator.settings import SubmitSettings
from orchestrator.spec import LoadedSpec, SweepSpec
from orchestrator.store.lease import Holder
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial, TrialView
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror
from orchestrator.tracking.sync import finish_parent, open_mlflow
from orchestrator.trainer_registry import TRAINERS

LEASE_STALE_AFTER_S = 120.0
HEARTBEAT_EVERY_S = 10.0


@dataclass(frozen=True)
class SweepOutcome:
    spec: SweepSpec
    trials: list[TrialView]
    ran: int
    skipped: int
    mlflow_behind: bool
    experiment_id: str  # the sweep's MLflow experiment, for the link to its runs

    @property
    def failed(self) -> list[TrialView]:
        return [t for t in self.trials if t.status == "failed"]

    @property
    def stopped(self) -> list[TrialView]:
        return [t for t in self.trials if t.status == "stopped"]


def trials_to_run(plan: Plan, statuses: dict[str, str], rerun_failed: bool) -> list[Trial]:
    """Completed trials never run again; failed ones only when asked to."""
    skip = {"completed"} if rerun_failed else {"completed", "failed"}
    return [t for t in plan.trials if statuses.get(t.key, "pending") not in skip]


def run_sweep(
    loaded: LoadedSpec, plan: Plan, settings: SubmitSettings, console: Console, store: ResultsStore
) -> SweepOutcome:
    spec = plan.spec
    holder = Holder.this_process()
    # The lease comes first, so that a sweep already being run is refused at once.
    store.acquire_lease(spec.name, holder, LEASE_STALE_AFTER_S)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="gapsweep-mlflow") as pool:
            # MLflow's start (its import and, for a new SQLite store, its schema migrations) and
            # Ray's take seconds each and need nothing of each other: MLflow starts in a thread
            # while Ray starts here (Ray wants the main thread for its signal handler).
            mlflow = pool.submit(open_mlflow, settings.services.mlflow_uri, spec.name)
            return _submit_holding_lease(loaded, plan, settings, console, store, mlflow, holder)
    finally:
        store.release_lease(spec.name, holder)


def _submit_holding_lease(
    loaded: LoadedSpec,
    plan: Plan,
    settings: SubmitSettings,
    console: Console,
    store: ResultsStore,
    mlflow: Future[tuple[MlflowTracker, str]],
    holder: Holder,
) -> SweepOutcome:
    spec = plan.spec
    metric = (spec.metric.name, spec.metric.mode)
    sweep = store.upsert_sweep(
        spec.name, spec.trainer, loaded.text, loaded.spec_hash, metric, loaded.overrides
    )
    statuses = store.register_trials(spec.name, [_new_trial(t) for t in plan.trials])
    todo = trials_to_run(plan, statuses, settings.rerun_failed)
    try:
        if todo:
            with console.status(
                "starting Ray..." if settings.services.address is None else "joining Ray..."
            ):
                _init_ray(settings.services.address)
        tracker, experiment_id = mlflow.result()
        parent = tracker.start_sweep_run(experiment_id, spec.name, loaded.text, sweep.mlflow_run_id)
        store.set_sweep_mlflow(spec.name, experiment_id, parent)
        mirror = MlflowMirror(
            tracker,
            store,
            spec.name,
            (experiment_id, parent),
            lambda m: console.print(f"[yellow]{m}"),
        )
        mirror.close_left_running()  # runs a killed driver left RUNNING for ended trials
        _say_what_is_skipped(console, plan, statuses, todo)
        if todo:
            _run_sweep(plan, statuses, todo, settings, console, store, mirror, holder)
    finally:
        _shutdown_local_ray(settings.services.address)
    # Runs that ended while MLflow was away still need their last steps, status and artifacts.
    behind = mirror.sync_all() if mirror.had_outage else 0
    views = store.trials(spec.name)
    finish_parent(mirror, parent, views, spec.metric.name, spec.metric.mode)
    return SweepOutcome(
        spec=spec,
        trials=views,
        ran=len(todo),
        skipped=len(plan.trials) - len(todo),
        mlflow_behind=bool(behind) or not mirror.healthy,
        experiment_id=mirror.experiment_id,
    )


def _run_sweep(
    plan: Plan,
    statuses: dict[str, str],
    todo: list[Trial],
    settings: SubmitSettings,
    console: Console,
    store: ResultsStore,
    mirror: MlflowMirror,
    holder: Holder,
) -> None:
    name = plan.spec.name
    progress = _progress(plan, statuses, todo)
    try:
        with Live(progress, console=console, refresh_per_second=2, transient=False):
            beat = Heartbeat(store, name, holder)
            recorder = Recorder(store, mirror, progress, TRAINERS[plan.spec.trainer].metrics)
            _run_tune(plan, todo, settings, store, recorder, beat)
    finally:
        # Trials Tune stopped without a verdict (Ctrl-C, driver shutdown) are not left
        # looking as if they were still running.
        for key in store.stop_unfinished(name, [t.key for t in todo]):
            mirror.close_trial(key)


class Heartbeat(Callback):
    """Keeps the sweep's lease fresh while Tune runs (Tune calls this every loop iteration)."""

    def __init__(self, store: ResultsStore, sweep: str, holder: Holder) -> None:
        self.store, self.sweep, self.holder = store, sweep, holder
        self.last = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {"sweep": self.sweep}  # see Recorder.__getstate__

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self.last >= HEARTBEAT_EVERY_S:
            self.store.heartbeat(self.sweep, self.holder)
            self.last = time.monotonic()


def _progress(plan: Plan, statuses: dict[str, str], todo: list[Trial]) -> SweepProgress:
    running = {t.key for t in todo}
    progress = SweepProgress(plan.spec.name, _total_steps(plan))
    for t in plan.trials:
        shown = "pending" if t.key in running else statuses[t.key]
        progress.add(t.key, t.name, t.varied, "skipped" if shown == "completed" else shown)
    return progress


def _say_what_is_skipped(
    console: Console, plan: Plan, statuses: dict[str, str], todo: list[Trial]
) -> None:
    done = sum(1 for s in statuses.values() if s == "completed")
    failed = sum(1 for t in plan.trials if statuses[t.key] == "failed")
    if done:
        console.print(
            f"{done} of {len(plan.trials)} trials already completed in the results store; "
            f"running the other {len(todo)}."
        )
    if failed and not any(statuses[t.key] == "failed" for t in todo):
        console.print(
            f"{failed} failed trials are not run again; pass --rerun-failed to retry them."
        )


def _run_tune(
    plan: Plan,
    todo: list[Trial],
    settings: SubmitSettings,
    store: ResultsStore,
    recorder: Callback,
    heartbeat: Callback,
) -> None:
    from ray import tune

    from orchestrator.trainable import run_trial

    spec = plan.spec
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
            storage_path=str(settings.services.storage.resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[recorder, heartbeat],
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
