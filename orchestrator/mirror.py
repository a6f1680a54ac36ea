"""MLflow as a mirror of the results store.

The SQL store is the record of truth and is always written first; MLflow is brought up to date
from it: each trial's child run is created (or reused) from its stored row, and the metric
values past the trial's `mlflow_last_step` watermark are logged in batches. When MLflow fails,
the sweep goes on; the mirror stays quiet for a while, then tries again and catches up from the
store, and `orchestrator sync SWEEP` does the same after the fact.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.artifacts import write_trial_artifacts
from orchestrator.plan import flatten
from orchestrator.store.repository import ResultsStore, TrialView
from orchestrator.tracking import MlflowTracker

RETRY_AFTER_S = 20.0
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


class MlflowMirror:
    def __init__(
        self,
        tracker: MlflowTracker,
        store: ResultsStore,
        sweep: str,
        mlflow_ids: tuple[str, str],
        warn: Callable[[str], None],
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.sweep = sweep
        self.experiment_id, self.parent_run_id = mlflow_ids
        self.warn = warn
        self.down_since: float | None = None
        self.had_outage = False  # some call failed during this run: a final catch-up is due
        # Trials whose run this mirror made, or whose MLflow history it has checked against the
        # store's watermark: what it logs to them starts past that watermark.
        self.verified: set[str] = set()

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def open_trial(self, key: str) -> None:
        """Make sure the trial has its child run and mark it running."""
        run_id = self._run_for(self.store.trial(self.sweep, key))
        if run_id is not None:
            self._attempt(lambda: self.tracker.client.update_run(run_id, status="RUNNING"))

    def push(self, key: str, tags: dict[str, str] | None = None) -> None:
        """Log every stored value of the trial that MLflow does not have yet."""
        view = self.store.trial(self.sweep, key)
        run_id = self._run_for(view)
        if run_id is None:
            return
        after = -1 if view.mlflow_last_step is None else view.mlflow_last_step
        rows = self.store.metrics_after(self.sweep, key, after)
        if tags and not self._attempt(lambda: self.tracker.set_tags(run_id, tags)):
            return
        if rows and key not in self.verified:
            rows = self._not_yet_logged(key, run_id, rows)
        if rows and self._attempt(lambda: self.tracker.log_metric_rows(run_id, rows)):
            self.store.set_mlflow_step(self.sweep, key, rows[-1][0])

    def _not_yet_logged(
        self, key: str, run_id: str, rows: list[tuple[int, str, float]]
    ) -> list[tuple[int, str, float]]:
        """The rows past MLflow's own last step, the first time this mirror logs to a run an
        earlier driver made: one killed between logging a batch and recording that in the store
        leaves MLflow ahead of the watermark, and those steps must not be logged twice (by a
        resumed trial or by `orchestrator sync`)."""
        logged: list[int | None] = []
        if not self._attempt(lambda: logged.append(self.tracker.last_logged_step(run_id))):
            return []  # MLflow is down: the next push asks again
        self.verified.add(key)
        last = logged[0]
        if last is None:
            return rows
        remaining = [row for row in rows if row[0] > last]
        if not remaining:  # MLflow has them all: only the watermark was behind
            self.store.set_mlflow_step(self.sweep, key, rows[-1][0])
        return remaining

    def close_trial(self, key: str) -> None:
        """Catch up, then give the run the status the store has for the trial."""
        self.push(key)
        view = self.store.trial(self.sweep, key)
        status = MLFLOW_STATUS.get(view.status)
        if status is None or view.mlflow_run_id is None:
            return
        run_id = view.mlflow_run_id
        self._log_artifacts(view, run_id)
        if view.error:
            tags = {"gapsweep.error": view.error[:5000]}
            self._attempt(lambda: self.tracker.set_tags(run_id, tags))
        self._attempt(lambda: self.tracker.end_run(run_id, status))

    def finish_parent(self, run_id: str, summary: dict[str, float], status: str) -> None:
        self._attempt(lambda: self.tracker.log_metrics(run_id, 0, summary))
        self._attempt(lambda: self.tracker.end_run(run_id, status))

    def sync_all(self) -> int:
        """Bring every trial of the sweep up to date; returns how many are not (MLflow down)."""
        for view in self.store.trials(self.sweep):
            self.down_since = None  # an explicit sync tries every trial
            if view.status in MLFLOW_STATUS:
                self.close_trial(view.key)
            elif view.status == "running" or view.last_step is not None:
                self.push(view.key)
        return sum(1 for v in self.store.trials(self.sweep) if _behind(v))

    def _log_artifacts(self, view: TrialView, run_id: str) -> None:
        with tempfile.TemporaryDirectory(prefix="gapsweep-artifacts-") as folder:
            files = write_trial_artifacts(view, Path(folder))
            self._attempt(lambda: self.tracker.log_files(run_id, files))

    def _run_for(self, view: TrialView) -> str | None:
        if view.mlflow_run_id is not None:
            return view.mlflow_run_id
        params = flatten(view.config)
        created: list[str] = []

        def create() -> None:
            created.append(
                self.tracker.start_trial_run(
                    self.experiment_id,
                    self.parent_run_id,
                    self.sweep,
                    (view.key, view.name),
                    params,
                    None,
                )
            )

        if not self._attempt(create):
            return None
        self.verified.add(view.key)  # a new run has nothing logged yet
        self.store.set_trial_run_id(self.sweep, view.key, created[0])
        return created[0]

    def _attempt(self, action: Callable[[], object]) -> bool:
        """Run one MLflow call; False (and quiet for a while) when MLflow fails."""
        if self.down_since is not None and time.monotonic() - self.down_since < RETRY_AFTER_S:
            return False
        try:
            action()
        except Exception as exc:  # any failure of MLflow must not stop the sweep
            if self.down_since is None:
                self.warn(
                    f"MLflow is unreachable ({_first_line(exc)}); results still go to the SQL "
                    f"store, MLflow logging is retried, and `orchestrator sync {self.sweep}` "
                    "back-fills it"
                )
            self.down_since = time.monotonic()
            self.had_outage = True
            return False
        if self.down_since is not None:
            self.warn("MLflow is reachable again; catching up from the results store")
            self.down_since = None
        return True


def _behind(view: TrialView) -> bool:
    if view.last_step is None:
        return False
    return view.mlflow_run_id is None or (view.mlflow_last_step or -1) < view.last_step


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
