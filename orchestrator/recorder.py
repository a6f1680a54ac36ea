"""The one writer: a Ray Tune callback on the driver that records every trial event in the SQL
results store, mirrors it to MLflow, and feeds the live progress table.

Trials never write to the stores themselves; their results (orchestrator/result.py) reach the
driver through Tune and are recorded here once, in the order they arrive. The SQL store is written
first: it is the record of truth; then the mirror hands the same values to MLflow.

Reports are gathered for a quarter of a second and written together (orchestrator/
report_batch.py); every other event is written at once, after the reports gathered before it.

While the store is away longer than its retries, the writes wait in order in the
`BufferedWriter` (orchestrator/store/buffered.py) and the sweep goes on; MLflow is not handed
what the store has not taken, and the trials concerned are caught up from the store once it has.

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

from orchestrator.errors import GapsweepError, LeaseLostError
from orchestrator.progress import SweepProgress
from orchestrator.report_batch import MirrorDue, ReportBatch
from orchestrator.result import STEP, PackResult, TrialResult
from orchestrator.store.buffered import BufferedWriter
from orchestrator.store.pending import Write
from orchestrator.trace import Trace
from orchestrator.tracking.mirror import MlflowMirror
from orchestrator.tracking.mirror_thread import MirrorThread

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
        writer: BufferedWriter,
        mirror: MlflowMirror,
        progress: SweepProgress,
        metric_names: tuple[str, ...],
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        self.trace = Trace.from_env()
        self.metric_names = metric_names  # what the sweep's trainer declares
        self.writer = writer
        self.mirror = mirror
        self.batch = ReportBatch.from_env()
        self.sweep = mirror.sweep
        self.progress = progress
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.placed: set[str] = set()
        self.terminal_errors: dict[str, str] = {}
        self.tags_due: dict[str, dict[str, str]] = {}  # run tags MLflow has not been given yet
        # MLflow's share of every event, run in order off Tune's loop (tracking/mirror_thread.py).
        self.mlflow = MirrorThread(mirror, self.tags_due)
        # Whether the run's stopper is ending the sweep: Tune then ends every trial as if done.
        self.stopping = stopping or (lambda: writer.over_bound)
        # With a scheduler, which may end trials early: each trial's steps when it trains to
        # its end (a trial ended short of them was pruned).
        self.scheduled_steps: dict[str, int] | None = None
        # Tune trials that are packs (orchestrator/packing.py) -> their members' trial keys;
        # every event of a pack is recorded for each member it concerns.
        self.packs: dict[str, tuple[str, ...]] = {}
        self.ended: set[str] = set()  # members that failed alone while their pack went on
        # Trials Tune gave up on with retries left (`_lost_before_start`), and how often each
        # was: run.py runs them again, each no more often than Tune would have retried it.
        self.lost: set[str] = set()
        self.times_lost: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) for `Tuner.restore`, which gapsweep
        # does not use: resuming goes through the results store. Database engines and clients
        # cannot be pickled and must not be persisted, so only the sweep name travels.
        return {"sweep": self.sweep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @_dropped_once_lease_lost
    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.writer.drain_if_due()  # results waiting for the store go in as soon as it is back
        if self.batch.due:
            self.flush()

    @_dropped_once_lease_lost
    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.flush()

    def _keys(self, trial: Any) -> tuple[str, ...]:
        """The trial keys a Tune trial stands for: its own, or its pack's members'."""
        key = trial.config["trial_key"]
        return tuple(k for k in self.packs.get(key, (key,)) if k not in self.ended)

    @_dropped_once_lease_lost
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        for key in self._keys(trial):
            self._start(key)

    def _start(self, key: str) -> None:
        self.trace.event(key, "start", time.time())
        self._write("mark_running", key, host=None, node_id=None)
        self.placed.discard(key)
        self.last_metrics.pop(key, None)
        self._flush_mirror(key)
        self._mirror(key, lambda: self.mirror.open_trial(key))
        self.progress.update(key, status="running")

    @_dropped_once_lease_lost
    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        pack = PackResult.from_tune(result, self.metric_names)
        if pack is None:
            self._result(
                trial.config["trial_key"], TrialResult.from_tune(result, self.metric_names)
            )
            return
        for key, reported in pack.reports.items():
            self._result(key, reported)
        for key, error in pack.failed.items():  # the pack goes on without them
            self._end(key, "failed", self.last_metrics.get(key, {}), error)
            self.ended.add(key)

    def _result(self, key: str, reported: TrialResult) -> None:
        if reported.terminal_error is not None:
            self.terminal_errors[key] = reported.terminal_error
            return
        first = key not in self.placed
        tags = self._place(key, reported) if first else self.tags_due.pop(key, None)
        step, metrics = reported.step, reported.metrics
        self.batch.add_report(key, step, metrics, first, tags)
        if self.batch.due:
            self.flush()
        self.last_metrics[key] = reported.metrics
        self.progress.update(key, step=reported.step, metrics=reported.metrics)
        if first:
            self.trace.event(key, "entered", reported.placement.entered_at)
        self.trace.event(key, "report", reported.reported_at, step=reported.step)

    def _place(self, key: str, reported: TrialResult) -> dict[str, str]:
        """Record where the attempt runs (first result of an attempt); the run's tags."""
        where = reported.placement
        self._write(
            "set_placement",
            key,
            host=where.host,
            node_id=where.node_id,
            resumed_from_step=reported.resumed_from,
        )
        self.placed.add(key)
        return {"gapsweep.host": str(where.host), "gapsweep.node_id": str(where.node_id)}

    @_dropped_once_lease_lost
    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        key = trial.config["trial_key"]
        if key not in self.packs:
            self._write("set_checkpoint", key, path=str(checkpoint.path))
            return
        # A pack's checkpoint: a folder per member, all recorded in one transaction, so a kill
        # cannot leave some members at this checkpoint and the others at the one before.
        for member in self._keys(trial):
            folder = Path(checkpoint.path) / member
            if folder.is_dir():
                self.batch.add_write(Write("set_checkpoint", {"key": member, "path": str(folder)}))
        self._flush_store()

    @_dropped_once_lease_lost
    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        for key in self._keys(trial):
            self._complete(key, trial.last_result.get(STEP))

    def _complete(self, key: str, last_step: Any) -> None:
        error = self.terminal_errors.pop(key, None)
        status = "completed" if error is None else "failed"
        if error is None and self.stopping():
            # Tune ends every trial this way when the run's stopper stops the sweep (a cancel,
            # too many results waiting for the store). It goes on from its last checkpoint
            # when resumed.
            status = "stopped"
        elif error is None and self._cut_short(key, last_step):
            status = "pruned"  # the scheduler ended it before its trainer's last step
        self._end(key, status, self.last_metrics.get(key, {}), error)
        self.trace.event(key, "done", time.time())

    def _end(
        self, key: str, status: str, metrics: dict[str, float] | None, error: str | None
    ) -> None:
        self._write("finish_trial", key, status=status, metrics=metrics, error=error)
        self._flush_mirror(key)
        self._mirror(key, lambda: self.mirror.close_trial(key))
        self.progress.update(key, status=status)

    def _cut_short(self, key: str, step: Any) -> bool:
        steps = None if self.scheduled_steps is None else self.scheduled_steps.get(key)
        return steps is not None and isinstance(step, int) and step < steps

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        for key in self._keys(trial):
            self.progress.update(key, status="pending")

    @_dropped_once_lease_lost
    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = error_summary(trial.error_file)
        for key in self._keys(trial):
            if self._lost_before_start(key, trial):
                self.lost.add(key)
                self.progress.update(key, status="pending")
            else:
                self._end(key, "failed", self.last_metrics.get(key), error)

    def _lost_before_start(self, key: str, trial: Any) -> bool:
        """Whether Tune ended the trial with retries left: it retries a trial whose worker dies
        while it runs, but not a pending one whose reused worker died while being readied for
        it (a SIGKILLed or OOM-killed worker). Such a trial has not failed; it is left
        unfinished for run.py to run again, as often as Tune would have retried it."""
        if not bool(trial.should_recover()):
            return False
        self.times_lost[key] = self.times_lost.get(key, 0) + 1
        return self.times_lost[key] <= int(trial.max_failures)

    def take_lost(self) -> set[str]:
        """The trials lost since the last call (see `_lost_before_start`)."""
        lost, self.lost = self.lost, set()
        return lost

    def flush(self) -> None:
        """Write everything gathered: the store's writes in one transaction, then each trial's
        reports to MLflow in one call."""
        self._flush_store()
        for key, due in self.batch.take_mirror().items():
            self._hand_over(key, due)

    def flush_at_end(self) -> None:
        """The last batch, as the sweep ends or is stopped, and MLflow's share of everything
        handed to it. A store that refuses it is said, not raised, so that the driver still
        settles what waits and marks unfinished trials."""
        try:
            self.flush()
        except LeaseLostError:
            pass  # the run says so: another driver took the sweep over
        except GapsweepError as exc:
            self.writer.say(
                f"{exc}; the last reports of the running trials are not recorded: submitting "
                "the sweep again runs them from their last recorded checkpoint"
            )
        finally:
            self.mlflow.close()

    def _write(self, op: str, key: str, **args: Any) -> None:
        """A write other than a report's: at once, after the reports gathered before it."""
        self.batch.add_write(Write(op, {"key": key, **args}))
        self._flush_store()

    def _flush_store(self) -> None:
        writes = self.batch.take_writes()
        if not writes:
            return
        try:
            self.writer.write_many(writes)
        except BaseException:
            # The store refused them (the lease moved on, or a failure past its retries):
            # MLflow must not be handed what the store does not hold.
            self.batch.take_mirror()
            raise

    def _flush_mirror(self, key: str) -> None:
        """MLflow's share of `key`'s gathered reports, before its run is opened or closed."""
        self._flush_store()
        for due in self.batch.take_mirror(key).values():
            self._hand_over(key, due)

    def _hand_over(self, key: str, due: MirrorDue) -> None:
        push = functools.partial(self.mirror.push_many, key, due.reports, due.tags)
        self._mirror(key, push, due.tags)

    def _mirror(
        self, key: str, hand_over: Callable[[], None], tags: dict[str, str] | None = None
    ) -> None:
        """Hand MLflow what the store has just taken, on the mirror's thread. While writes wait
        for the store (or when the mirror's own store call fails), the trial is caught up from
        the store later."""
        if not self.writer.away:
            self.mlflow.hand(key, hand_over, tags)
            return
        if tags:
            self.tags_due[key] = tags
        self.mlflow.hand(key, lambda: self.mirror.catch_up_later(key), logs=False)


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
