"""Running a planned sweep on Ray Tune under the sweep's lease, with the recorder as the one
writer of results and the MLflow mirror beside it."""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

# Ray Tune reads these when it is imported, so they are set before anything imports it: its
# default CSV/JSON/TensorBoard loggers would duplicate what the recorder writes, and its console
# output would interleave with the live table.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from ray.tune import CLIReporter
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper
from rich.console import Console
from rich.live import Live

from orchestrator.errors import ServiceError
from orchestrator.packing import pack_units
from orchestrator.plan import Plan, Trial, new_trial, trials_to_run
from orchestrator.progress import SweepProgress
from orchestrator.recorder import Recorder
from orchestrator.schedulers import tune_scheduler
from orchestrator.settings import SubmitSettings, positive_setting
from orchestrator.spec import LoadedSpec, SweepSpec
from orchestrator.store.buffered import WAIT_ENV, WAIT_S, BufferedWriter
from orchestrator.store.lease import Fence
from orchestrator.store.pending import replay_spilled
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import SweepView, TrialView
from orchestrator.study import draws_left, longest_steps, optuna_search, stored_plan, trial_steps
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror
from orchestrator.tracking.sync import finish_parent, open_mlflow
from orchestrator.trainer_registry import TRAINERS
from orchestrator.versions import choose_version


@dataclass(frozen=True)
class SweepOutcome:
    spec: SweepSpec
    trials: list[TrialView]
    ran: int
    skipped: int
    mlflow_behind: bool
    experiment_id: str  # the sweep's MLflow experiment, for the link to its runs
    cancelled_by: str | None = None  # who ran `orchestrator cancel` (host, pid), and when

    @property
    def failed(self) -> list[TrialView]:
        return [t for t in self.trials if t.status == "failed"]

    @property
    def stopped(self) -> list[TrialView]:
        return [t for t in self.trials if t.status == "stopped"]


def run_sweep(
    loaded: LoadedSpec, plan: Plan, settings: SubmitSettings, console: Console, store: ResultsStore
) -> SweepOutcome:
    # The lease comes first, so that a sweep already being run is refused at once. A thread
    # keeps it fresh until it is released, whatever the driver is doing meanwhile.
    with _sigterm_as_ctrl_c(), store.holding_lease(plan.spec.name) as fence:
        try:
            outcome = _start_mlflow_and_submit(loaded, plan, settings, console, store, fence)
        except BaseException:
            # Whatever a lost lease made fail on the way out (Tune, a write), that is the news.
            if fence.lost is not None:
                raise fence.lost from None
            raise
        if fence.lost is not None:
            raise fence.lost
        return outcome


def _start_mlflow_and_submit(
    loaded: LoadedSpec,
    plan: Plan,
    settings: SubmitSettings,
    console: Console,
    store: ResultsStore,
    fence: Fence,
) -> SweepOutcome:
    with ThreadPoolExecutor(1, thread_name_prefix="gapsweep-mlflow") as pool:
        # MLflow's start (its import and, for a new SQLite store, its schema migrations) and
        # Ray's take seconds each and need nothing of each other: MLflow starts in a thread
        # while Ray starts here (Ray wants the main thread for its signal handler).
        mlflow = pool.submit(open_mlflow, settings.services.mlflow_uri, plan.spec.name)
        return _submit_holding_lease(loaded, plan, settings, console, store, mlflow, fence)


def _submit_holding_lease(
    loaded: LoadedSpec,
    plan: Plan,
    settings: SubmitSettings,
    console: Console,
    store: ResultsStore,
    mlflow: Future[tuple[MlflowTracker, str]],
    fence: Fence,
) -> SweepOutcome:
    spec = plan.spec
    # What the last driver could not hand to the store goes in before anything is read from it.
    replay_spilled(store, spec.name, settings.services.storage, fence.epoch, console.print)
    sweep, plan = _record_sweep(store, loaded, plan, settings.new_version)
    statuses = store.register_trials(spec.name, [new_trial(t) for t in plan.trials])
    todo = trials_to_run(plan, statuses, settings.rerun_failed)
    runs = bool(todo) or draws_left(plan)
    try:
        if runs:
            with console.status(
                "starting Ray..." if settings.services.address is None else "joining Ray..."
            ):
                _init_ray(settings.services.address)
        tracker, experiment_id = mlflow.result()
        store.check_lease(spec.name)  # MLflow alone is written next
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
        if runs:
            _run_sweep(plan, statuses, todo, settings, console, store, mirror, fence)
    finally:
        _shutdown_local_ray(settings.services.address)
    # Runs that ended while MLflow was away still need their last steps, status and artifacts.
    store.check_lease(spec.name)
    behind = mirror.sync_all() if mirror.had_outage else 0
    views = _of_this_version(store, spec.name)
    finish_parent(mirror, parent, views, [(m.name, m.mode) for m in spec.objectives])
    return SweepOutcome(
        spec=spec,
        trials=views,
        ran=len(todo),
        skipped=len(plan.trials) - len(todo),
        mlflow_behind=bool(behind) or not mirror.healthy,
        experiment_id=mirror.experiment_id,
        cancelled_by=fence.cancelled_by,
    )


def _record_sweep(
    store: ResultsStore, loaded: LoadedSpec, plan: Plan, new_version: bool
) -> tuple[SweepView, Plan]:
    """The sweep's row and its spec's version (refused when the spec changed more than adding
    trials, without `new_version`: orchestrator/versions.py); an Optuna sweep's plan holds
    the trials its version drew so far."""
    spec = plan.spec
    version = choose_version(store, loaded, plan, new_version)
    if spec.search == "optuna":
        plan = stored_plan(plan, store, version)
    metric = (spec.primary.name, spec.primary.mode)
    sweep = store.upsert_sweep(
        spec.name, spec.trainer, loaded.text, loaded.spec_hash, metric, loaded.overrides
    )
    written = (loaded.spec_hash, loaded.text, loaded.overrides)
    store.versions.record(spec.name, version, written, [t.key for t in plan.trials])
    return sweep, plan


def _of_this_version(store: ResultsStore, sweep: str) -> list[TrialView]:
    version = store.versions.get(sweep)
    held = None if version is None else set(version.keys)
    return [v for v in store.trials(sweep) if held is None or v.key in held]


def _run_sweep(
    plan: Plan,
    statuses: dict[str, str],
    todo: list[Trial],
    settings: SubmitSettings,
    console: Console,
    store: ResultsStore,
    mirror: MlflowMirror,
    fence: Fence,
) -> None:
    name, progress = plan.spec.name, _progress(plan, statuses, todo)
    say = functools.partial(console.print, style="yellow")
    writer = BufferedWriter.for_sweep(store, name, settings.services.storage, fence.epoch, say)
    wait_s = positive_setting(WAIT_ENV, WAIT_S)
    stopper = SweepStopper(fence, writer)
    metrics = TRAINERS[plan.spec.trainer].metrics
    recorder = Recorder(writer, mirror, progress, metrics, stopper.stop_all)
    if plan.spec.scheduler is not None:
        recorder.scheduled_steps = {t.key: trial_steps(t.config) for t in plan.trials}
    try:
        with Live(progress, console=console, refresh_per_second=2, transient=False):
            _run_tune(plan, todo, settings, store, recorder, stopper)
            # Trials Tune gave up on with retries left (Recorder._lost_before_start) run again;
            # a study's go on at its next submit, which rebuilds it from the store.
            while plan.spec.search is None and (lost := recorder.take_lost()):
                if stopper.stop_all():
                    break  # a cancel or a lost lease: they are stopped, as the rest
                again = [t for t in todo if t.key in lost]
                _run_tune(plan, again, settings, store, recorder, stopper)
    finally:
        recorder.flush_at_end()  # what Tune reported since the last batch (Ctrl-C too)
        if writer.away:  # results still wait for the store: at most wait_s more
            with console.status("") as line:
                writer.settle(wait_s, line.update)
        # Trials Tune stopped without a verdict (Ctrl-C, driver shutdown) are not left
        # looking as if they were still running.
        for key in store.stop_unfinished(name, [v.key for v in _of_this_version(store, name)]):
            mirror.close_trial(key)


class SweepStopper(Stopper):
    """Stops the whole Tune run once the sweep's lease is found lost (by the heartbeat thread
    or by a refused write): another driver runs the sweep now; once more results wait for
    an absent results store than a sweep keeps (GAPSWEEP_PENDING_MAX); or once `orchestrator
    cancel` asked (the heartbeat thread sees it). Tune asks at every step of its loop."""

    def __init__(self, fence: Fence, writer: BufferedWriter) -> None:
        self.fence: Fence | None = fence
        self.writer: BufferedWriter | None = writer

    def __getstate__(self) -> dict[str, Any]:
        return {"fence": None, "writer": None}  # see Recorder.__getstate__

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        fence, writer = self.fence, self.writer
        if fence is not None and (fence.lost is not None or fence.cancelled_by is not None):
            return True
        return writer is not None and writer.over_bound


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM does what Ctrl-C does: Tune stops its trials (they are marked stopped), the lease
    is released and the way to resume is printed. `_init_ray` installs it again after Ray
    replaced it with its own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    os.kill(os.getpid(), signal.SIGINT)


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
    if plan.spec.search == "optuna":
        budget = plan.spec.num_samples
        left = max(0, budget - len(plan.trials))
        console.print(
            f"the study holds {len(plan.trials)} trials ({done} completed); it runs "
            f"{len(todo)} unfinished and draws {left} more of its budget of {budget}."
        )
    elif done:
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
    recorder: Recorder,
    stopper: Stopper,
) -> None:
    from ray import tune

    from orchestrator.pack_trainable import run_unit, tune_resources

    spec = plan.spec
    checkpoints = {v.key: v.checkpoint_path for v in store.trials(spec.name)}
    units = pack_units(spec, todo).units  # only the members not completed are packed again
    recorder.packs = {u.key: u.members for u in units if u.packed}
    trainable = tune.with_parameters(
        run_unit,
        trainer=spec.trainer,
        configs={t.key: t.config_json for t in todo},
        resume={t.key: path for t in todo if (path := checkpoints.get(t.key))},
        packs={key: list(members) for key, members in recorder.packs.items()},
        names={t.key: t.name for t in todo},
    )
    resources = tune_resources(spec, recorder.packs)
    search = _search(plan, store, recorder, settings.rerun_failed)
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={} if search else {"trial_key": tune.grid_search([u.key for u in units])},
        tune_config=tune.TuneConfig(
            search_alg=search,
            num_samples=-1 if search else 1,  # the searcher says when its budget is spent
            max_concurrent_trials=None if search else spec.max_concurrent_trials,
            # A fresh worker per trial would re-import torch and transformers every time.
            reuse_actors=True,
            trial_dirname_creator=lambda trial: str(trial.config["trial_key"]),
            scheduler=tune_scheduler(spec, longest_steps(plan)),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(settings.services.storage.resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[recorder],
            stop=stopper,
            verbose=0,
            # Named, not detected: in a notebook Tune would pick a reporter that clears the
            # cell's output (the live table with it) even at verbose=0, where it says nothing.
            progress_reporter=CLIReporter(),
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
    finally:
        if threading.current_thread() is threading.main_thread():
            # ray.init sets a SIGTERM handler of its own, which exits at once.
            signal.signal(signal.SIGTERM, _interrupt)


def _search(
    plan: Plan, store: ResultsStore, recorder: Recorder, rerun_failed: bool
) -> Searcher | None:
    if plan.spec.search != "optuna":
        return None

    def show(trial: Trial) -> None:
        recorder.progress.add(trial.key, trial.name, trial.varied)
        if recorder.scheduled_steps is not None:
            recorder.scheduled_steps[trial.key] = trial_steps(trial.config)

    return optuna_search(plan, store, show, rerun_failed)


def _total_steps(plan: Plan) -> int | None:
    """The step count shown as `step/total`, when every trial has the same one."""
    steps = {getattr(t.config, "total_steps", None) for t in plan.trials}
    return steps.pop() if len(steps) == 1 else None
