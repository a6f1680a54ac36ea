"""MLflow as a mirror of the results store.

The SQL store is the record of truth and is always written first. While MLflow is healthy the
mirror logs exactly what the recorder hands it (a trial's reports of the last moment, in one
call) and moves the trial's `mlflow_last_step` watermark; it reads the store only to catch a
trial up: after an outage, for a run an earlier driver made (a resumed sweep) and in
`orchestrator sync`. When MLflow fails the sweep goes on; the mirror stays quiet for a while,
then tries again and catches up.

A driver can die between any two of these writes. A run it made whose id never reached the store
is found again by its tags and adopted, never made twice; a run it left RUNNING for a trial the
store has since ended is closed with the trial's status by the next driver (`close_left_running`,
at submit and resume) or by `orchestrator sync`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import without_passwords
from orchestrator.plan import flatten
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import TrialView
from orchestrator.tracking.artifacts import write_trial_artifacts
from orchestrator.tracking.client import MlflowTracker, kill_point

RETRY_AFTER_S = 20.0
# A pruned run is KILLED with the tag gapsweep.pruned: MLflow has no status of its own for it.
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "stopped": "KILLED",
    "pruned": "KILLED",
}
Rows = list[tuple[int, str, float]]
Report = tuple[int, Mapping[str, float]]  # a step and its values


@dataclass
class _Run:
    """A trial's MLflow run and the last step MLflow holds of it (-1: none)."""

    run_id: str
    watermark: int


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
        self.runs: dict[str, _Run] = {}  # trials whose run and watermark this mirror knows
        # Trials whose MLflow history must be brought up to date from the store first.
        self.behind: set[str] = set()
        # Trials whose run this mirror made, or whose MLflow history it has checked against
        # the store's watermark: what it logs to them starts past that watermark.
        self.verified: set[str] = set()
        # Runs of this sweep by trial key, as MLflow had them when this mirror first needed a
        # run the store has no id for (None: not looked up yet).
        self.orphans: dict[str, str] | None = None

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def open_trial(self, key: str) -> None:
        """Make sure the trial has its child run and mark it running."""
        view = self.store.trial(self.sweep, key)
        run_id = self._run_for(view)
        if run_id is None:
            self.behind.add(key)
            return
        self.runs[key] = _run_of(run_id, view)
        if key not in self.verified or (view.last_step or -1) > self.runs[key].watermark:
            self.behind.add(key)
        self._attempt(lambda: self.tracker.mark_running(run_id))

    def push_many(
        self, key: str, reports: Sequence[Report], tags: dict[str, str] | None = None
    ) -> None:
        """Log reports of one attempt of the trial the recorder has stored, in step order, and
        the run's tags, when given: one MLflow call for all of them."""
        run = self.runs.get(key)
        if run is None or key in self.behind or self._quiet():
            self.behind.add(key)
            self.catch_up(key, tags)
            return
        # A resumed attempt repeats the steps past its checkpoint that MLflow may hold already.
        rows = [
            (step, name, value)
            for step, metrics in reports
            if step > run.watermark
            for name, value in sorted(metrics.items())
        ]
        if not rows and not tags:
            return
        if self._attempt(lambda: self.tracker.log_metric_rows(run.run_id, rows, tags)):
            if rows:
                self._advance(key, run, max(step for step, _, _ in rows))
        else:
            self._unsure(key)

    def catch_up(self, key: str, tags: dict[str, str] | None = None) -> None:
        """Log every stored value of the trial that MLflow does not have yet."""
        if self._quiet():
            return
        view = self.store.trial(self.sweep, key)
        run_id = self._run_for(view)
        if run_id is None:
            return
        run = self.runs[key] = _run_of(run_id, view)
        if tags and not self._attempt(lambda: self.tracker.set_tags(run_id, tags)):
            return
        rows = self.store.metrics_after(self.sweep, key, run.watermark)
        if rows and key not in self.verified:
            rows = self._not_yet_logged(key, run, rows)
            if key not in self.verified:
                return  # MLflow is down: the next report tries again
        if rows and not self._attempt(lambda: self.tracker.log_metric_rows(run_id, rows)):
            self._unsure(key)
            return
        if rows:
            self._advance(key, run, rows[-1][0])
        self.behind.discard(key)

    def _unsure(self, key: str) -> None:
        """A batch whose logging failed may still have reached MLflow (a server killed after
        it committed, before it answered): the next catch-up asks MLflow's own last step
        before logging anything again, so no step is logged twice."""
        self.behind.add(key)
        self.verified.discard(key)

    def _not_yet_logged(self, key: str, run: _Run, rows: Rows) -> Rows:
        """The rows past MLflow's own last step, the first time this mirror logs to a run an
        earlier driver made: one killed between logging a batch and recording that in the store
        leaves MLflow ahead of the watermark, and those steps must not be logged twice (by a
        resumed trial or by `orchestrator sync`)."""
        logged: list[int | None] = []
        if not self._attempt(lambda: logged.append(self.tracker.last_logged_step(run.run_id))):
            return []
        self.verified.add(key)
        last = logged[0]
        if last is None:
            return rows
        remaining = [row for row in rows if row[0] > last]
        if not remaining:  # MLflow has them all: only the watermark was behind
            self._advance(key, run, rows[-1][0])
        return remaining

    def catch_up_later(self, key: str) -> None:
        """What the recorder could not hand over (the results store was away): the trial is
        caught up from the store later, at its next report or in the final catch-up. MLflow's
        own last step is asked first, since a store failure may have come between logging a
        batch and recording its watermark."""
        self.behind.add(key)
        self.verified.discard(key)
        self.had_outage = True

    def close_trial(self, key: str) -> None:
        """Catch up, then give the run the status the store has for the trial."""
        kill_point("trial-closing")  # the store has the trial's end; MLflow not yet
        if key in self.behind or key not in self.runs:
            self.catch_up(key)
        view = self.store.trial(self.sweep, key)
        status = MLFLOW_STATUS.get(view.status)
        self.runs.pop(key, None)
        if status is None or view.mlflow_run_id is None:
            return
        run_id = view.mlflow_run_id
        self._log_artifacts(view, run_id)
        tags = {"gapsweep.error": view.error[:5000]} if view.error else {}
        if view.status == "pruned":
            tags["gapsweep.pruned"] = "true"  # stopped early by the sweep's scheduler
        if tags:
            self._attempt(lambda: self.tracker.set_tags(run_id, tags))
        self._attempt(lambda: self.tracker.end_run(run_id, status))

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        self._attempt(lambda: self.tracker.set_tags(run_id, tags))

    def finish_parent(self, run_id: str, summary: dict[str, float], status: str) -> None:
        self._attempt(lambda: self.tracker.log_metrics(run_id, 0, summary))
        self._attempt(lambda: self.tracker.end_run(run_id, status))

    def close_left_running(self) -> None:
        """Close the runs an earlier driver left RUNNING for trials the store has since ended
        (it died between recording a trial's end and closing its run): caught up, then given the
        trial's status. One search finds them; only those are touched."""
        running = self._trial_runs("RUNNING")
        if running is None:
            return
        ended = {v.key: v for v in self.store.trials(self.sweep) if v.status in MLFLOW_STATUS}
        for key, run_id in running.items():
            view = ended.get(key)
            if view is not None and view.mlflow_run_id in (None, run_id):
                self.behind.add(key)
                self.close_trial(key)

    def sync_all(self) -> int:
        """Bring every trial of the sweep up to date; returns how many are not (MLflow down)."""
        for view in self.store.trials(self.sweep):
            self.down_since = None  # an explicit sync tries every trial
            self.behind.add(view.key)
            if view.status in MLFLOW_STATUS:
                self.close_trial(view.key)
            elif view.status == "running" or view.last_step is not None:
                self.catch_up(view.key)
        return sum(1 for v in self.store.trials(self.sweep) if _behind(v))

    def _advance(self, key: str, run: _Run, step: int) -> None:
        run.watermark = step
        self.store.set_mlflow_step(self.sweep, key, step)

    def _log_artifacts(self, view: TrialView, run_id: str) -> None:
        with tempfile.TemporaryDirectory(prefix="gapsweep-artifacts-") as folder:
            files = write_trial_artifacts(view, Path(folder))
            self._attempt(lambda: self.tracker.log_files(run_id, files))

    def _run_for(self, view: TrialView) -> str | None:
        """The trial's run: the one the store names, else one an earlier driver made but died
        before storing its id (adopted), else a new one; None while MLflow is down."""
        if view.mlflow_run_id is not None:
            return view.mlflow_run_id
        if self.orphans is None:
            self.orphans = self._trial_runs()
            if self.orphans is None:
                return None
        params = flatten(view.config)
        orphan = self.orphans.get(view.key)
        if orphan is not None:
            # Its params may never have been logged; the same values again are allowed.
            if not self._attempt(lambda: self.tracker.log_params(orphan, params)):
                return None
            del self.orphans[view.key]
            self.store.set_trial_run_id(self.sweep, view.key, orphan)
            return orphan  # not verified: what it holds is checked before logging to it
        created: list[str] = []

        def create() -> None:
            trial = (view.key, view.name)
            created.append(
                self.tracker.start_trial_run(
                    self.experiment_id, self.parent_run_id, self.sweep, trial, params, None
                )
            )

        if not self._attempt(create):
            return None
        self.verified.add(view.key)  # a new run has nothing logged yet
        self.store.set_trial_run_id(self.sweep, view.key, created[0])
        return created[0]

    def _trial_runs(self, status: str | None = None) -> dict[str, str] | None:
        """The sweep's runs in MLflow by trial key (None: MLflow is down)."""
        found: list[dict[str, str]] = []

        def search() -> None:
            found.append(self.tracker.trial_runs(self.experiment_id, self.sweep, status))

        return found[0] if self._attempt(search) else None

    def _quiet(self) -> bool:
        """MLflow failed a moment ago: wait before calling it again."""
        return self.down_since is not None and time.monotonic() - self.down_since < RETRY_AFTER_S

    def _attempt(self, action: Callable[[], object]) -> bool:
        """Run one MLflow call; False (and quiet for a while) when MLflow fails."""
        if self._quiet():
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


def _run_of(run_id: str, view: TrialView) -> _Run:
    return _Run(run_id, -1 if view.mlflow_last_step is None else view.mlflow_last_step)


def _behind(view: TrialView) -> bool:
    if view.last_step is None:
        return False
    return view.mlflow_run_id is None or (view.mlflow_last_step or -1) < view.last_step


def _first_line(exc: BaseException) -> str:
    lines = without_passwords(str(exc)).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
