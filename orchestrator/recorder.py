"""The one writer: a Ray Tune callback on the driver that records every trial event in the SQL
results store, mirrors it to MLflow, and feeds the live progress table.

Trials never write to the stores themselves; their results (orchestrator/result.py) reach the
driver through Tune and are recorded here once, in the order they arrive. The SQL store is written
first: it is the record of truth; then the mirror hands the same values to MLflow.

Once another driver took the sweep's lease over, the store refuses every write with
`LeaseLostError`; each event is then dropped whole (MLflow included), and the run's stopper ends
Tune (orchestrator/run.py), which raises that error.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, ParamSpec

from ray.tune import Callback

from orchestrator.errors import LeaseLostError
from orchestrator.progress import SweepProgress
from orchestrator.result import TrialResult
from orchestrator.store.repository import ResultsStore
from orchestrator.trace import Trace
from orchestrator.tracking.mirror import MlflowMirror

P = ParamSpec("P")


def _dropped_once_lease_lost(event: Callable[P, None]) -> Callable[P, None]:
    """A Tune event whose writes the store refused (the lease moved on) is dropped whole: it
    wrote nothing, and raising into Tune would only log a traceback before the stopper acts."""

    @functools.wraps(event)
    def recorded(*args: P.args, **kwargs: P.kwargs) -> None:
        with suppress(LeaseLostError):
            event(*args, **kwargs)

    return recorded


class Recorder(Callback):
    def __init__(
        self,
        store: ResultsStore,
        mirror: MlflowMirror,
        progress: SweepProgress,
        metric_names: tuple[str, ...],
    ) -> None:
        self.trace = Trace.from_env()
        self.metric_names = metric_names  # what the sweep's trainer declares
        self.store = store
        self.mirror = mirror
        self.sweep = mirror.sweep
        self.progress = progress
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.placed: set[str] = set()
        self.terminal_errors: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) for `Tuner.restore`, which gapsweep
        # does not use: resuming goes through the results store. Database engines and clients
        # cannot be pickled and must not be persisted, so only the sweep name travels.
        return {"sweep": self.sweep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @_dropped_once_lease_lost
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        self.trace.event(key, "start", time.time())
        self.store.mark_running(self.sweep, key, host=None, node_id=None)
        self.placed.discard(key)
        self.last_metrics.pop(key, None)
        self.mirror.open_trial(key)
        self.progress.update(key, status="running")

    @_dropped_once_lease_lost
    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        key = trial.config["trial_key"]
        reported = TrialResult.from_tune(result, self.metric_names)
        if reported.terminal_error is not None:
            self.terminal_errors[key] = reported.terminal_error
            return
        first = key not in self.placed
        tags = self._place(key, reported) if first else None
        self.store.record_metrics(
            self.sweep, key, reported.step, reported.metrics, first_of_attempt=first
        )
        self.mirror.push(key, reported.step, reported.metrics, tags)
        self.last_metrics[key] = reported.metrics
        self.progress.update(key, step=reported.step, metrics=reported.metrics)
        if first:
            self.trace.event(key, "entered", reported.placement.entered_at)
        self.trace.event(key, "report", reported.reported_at, step=reported.step)

    def _place(self, key: str, reported: TrialResult) -> dict[str, str]:
        """Record where the attempt runs (first result of an attempt); the run's tags."""
        where = reported.placement
        self.store.set_placement(self.sweep, key, where.host, where.node_id, reported.resumed_from)
        self.placed.add(key)
        return {"gapsweep.host": str(where.host), "gapsweep.node_id": str(where.node_id)}

    @_dropped_once_lease_lost
    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self.store.set_checkpoint(self.sweep, trial.config["trial_key"], str(checkpoint.path))

    @_dropped_once_lease_lost
    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        error = self.terminal_errors.pop(key, None)
        status = "completed" if error is None else "failed"
        self.store.finish_trial(self.sweep, key, status, self.last_metrics.get(key, {}), error)
        self.mirror.close_trial(key)
        self.progress.update(key, status=status)
        self.trace.event(key, "done", time.time())

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        self.progress.update(key, status="pending")

    @_dropped_once_lease_lost
    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        key = trial.config["trial_key"]
        error = error_summary(trial.error_file)
        self.store.finish_trial(self.sweep, key, "failed", self.last_metrics.get(key), error)
        self.mirror.close_trial(key)
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
