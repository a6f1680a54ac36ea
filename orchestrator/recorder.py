"""The one writer: a Ray Tune callback on the driver that records every trial event in the SQL
results store and MLflow, and feeds the live progress table.

Trials never write to the stores themselves; their results reach the driver through Tune and are
recorded here once, in the order they arrive. The SQL store is written first: it is the record of
truth, and MLflow is the view for the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from orchestrator.plan import Trial, flatten
from orchestrator.progress import SweepProgress
from orchestrator.store.repository import ResultsStore
from orchestrator.tracking import MlflowTracker
from orchestrator.trainer_registry import METRIC_NAMES


class Recorder(Callback):
    def __init__(
        self,
        sweep: str,
        trials: list[Trial],
        store: ResultsStore,
        tracker: MlflowTracker,
        mlflow_ids: tuple[str, str],
        progress: SweepProgress,
    ) -> None:
        self.sweep = sweep
        self.trials = {t.key: t for t in trials}
        self.store = store
        self.tracker = tracker
        self.experiment_id, self.parent_run_id = mlflow_ids
        self.progress = progress
        self.run_ids: dict[str, str] = {}
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.placed: set[str] = set()
        stored = store.trials(sweep)
        self._existing_run_ids = {v.key: v.mlflow_run_id for v in stored}
        # MLflow keeps every value logged for a step, so a step already logged by an earlier
        # attempt (or an earlier submission) is not logged again.
        self.mlflow_step = {v.key: -1 if v.last_step is None else v.last_step for v in stored}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) for `Tuner.restore`, which gapsweep
        # does not use: resuming goes through the results store. Database engines and clients
        # cannot be pickled and must not be persisted, so only the sweep name travels.
        return {"sweep": self.sweep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        self.store.mark_running(self.sweep, key, host=None, node_id=None)
        self.placed.discard(key)
        self.mlflow_step.setdefault(key, -1)
        self.last_metrics.pop(key, None)
        spec_trial = self.trials[key]
        run_id = self.tracker.start_trial_run(
            self.experiment_id,
            self.parent_run_id,
            self.sweep,
            (key, spec_trial.name),
            flatten(spec_trial.config.model_dump(mode="json")),
            self.run_ids.get(key) or self._existing_run_ids.get(key),
        )
        self.run_ids[key] = run_id
        self.store.set_trial_run_id(self.sweep, key, run_id)
        self.progress.update(key, status="running")

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        key = trial.config["trial_key"]
        step = int(result["step"])
        metrics = {
            name: float(result[name])
            for name in METRIC_NAMES
            if isinstance(result.get(name), int | float)
        }
        first = key not in self.placed
        if first:
            self.store.set_placement(self.sweep, key, result.get("host"), result.get("node_id"))
            self.placed.add(key)
        self.store.record_metrics(self.sweep, key, step, metrics, first_of_attempt=first)
        if step > self.mlflow_step[key]:
            self.tracker.log_metrics(self.run_ids[key], step, metrics)
            self.mlflow_step[key] = step
        self.last_metrics[key] = metrics
        self.progress.update(key, step=step, metrics=metrics)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self.store.set_checkpoint(self.sweep, trial.config["trial_key"], str(checkpoint.path))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        self.store.finish_trial(self.sweep, key, "completed", self.last_metrics.get(key, {}))
        self.tracker.end_run(self.run_ids[key], "FINISHED")
        self.progress.update(key, status="completed")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        self.progress.update(key, status="pending")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        error = error_summary(trial.error_file)
        self.store.finish_trial(self.sweep, key, "failed", self.last_metrics.get(key), error)
        if key in self.run_ids:
            self.tracker.client.set_tag(self.run_ids[key], "gapsweep.error", error[:5000])
            self.tracker.end_run(self.run_ids[key], "FAILED")
        self.progress.update(key, status="failed")


def error_summary(error_file: str | None) -> str:
    """The exception line of the trial's last failure, e.g. `NonFiniteLossError: ... step 12`.

    Tune writes the full traceback to a text file in the trial folder; the last line of the last
    failure is the exception itself, which is what a researcher needs to see first.
    """
    if not error_file or not Path(error_file).is_file():
        return "the trial failed without an error message"
    text = Path(error_file).read_text(errors="replace")
    last_failure = text.rsplit("Failure #", 1)[-1]
    lines = [ln.strip() for ln in last_failure.splitlines() if ln.strip()]
    return lines[-1] if lines else "the trial failed without an error message"
