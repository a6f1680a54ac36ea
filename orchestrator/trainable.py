"""The function Ray Tune runs in a worker: a trial's key in, the trainer run, results reported.

Only the trial key travels in Tune's param space; the validated configs travel once through
`tune.with_parameters`, so Tune's own config handling never touches (or mangles) them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from orchestrator.result import Placement, TrialResult, UndeclaredMetricError, check_declared
from orchestrator.trainer_registry import TRAINERS, TrainerEntry
from trainers.checkpoint import TrainState, load_state, save_state
from trainers.errors import NonFiniteLossError

FAULT_ENV = "GAPSWEEP_INJECT_FAULT"
# Beside a checkpoint's state: the step and metrics of the report it travelled with.
REPORTED_FILE = "reported.json"


class TuneCheckpoints:
    """The trainers' checkpoint hook on Ray Tune: a saved state travels with the next report.

    On restore, Tune's own latest checkpoint of this trial wins (a retry after a failure);
    otherwise `resume_from` (the last checkpoint the results store knows of, for a sweep
    submitted again after the driver died). Each checkpoint keeps the metrics of the report it
    travelled with, so that a trial resumed at its last step can report them again.
    """

    def __init__(self, resume_from: str | None, title: str) -> None:
        self.resume_from = resume_from
        self.title = title  # the trial's name, on the pictures its worker draws
        self.pending: Path | None = None
        self.restored_step: int | None = None
        self.restored_metrics: dict[str, float] | None = None  # of the restored checkpoint

    @property
    def restored(self) -> bool:
        return self.restored_step is not None

    def restore(self) -> TrainState | None:
        state = self._latest()
        self.restored_step = None if state is None else state.step
        return state

    def _latest(self) -> TrainState | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                return self._load(Path(directory))
        if self.resume_from is not None and Path(self.resume_from).exists():
            return self._load(Path(self.resume_from))
        return None

    def _load(self, folder: Path) -> TrainState:
        state = load_state(folder)
        reported = folder / REPORTED_FILE
        if reported.is_file():  # checkpoints written before it was kept have none
            saved = json.loads(reported.read_text())
            if saved.get("step") == state.step:
                self.restored_metrics = {str(k): float(v) for k, v in saved["metrics"].items()}
        return state

    def save(self, state: TrainState) -> None:
        from orchestrator.tracking.artifacts import draw_beside  # matplotlib: only when drawn

        self.discard()
        self.pending = Path(tempfile.mkdtemp(prefix="gapsweep-ckpt-"))
        save_state(state, self.pending)
        draw_beside(self.pending, self.title)

    def report(self, result: TrialResult) -> None:
        if self.pending is None:
            tune.report(result.to_tune())
            return
        try:
            saved = {"step": result.step, "metrics": result.metrics}
            (self.pending / REPORTED_FILE).write_text(json.dumps(saved))
            # Tune copies the folder into the trial's storage before report returns.
            checkpoint = tune.Checkpoint.from_directory(str(self.pending))
            tune.report(result.to_tune(), checkpoint=checkpoint)
        finally:
            self.discard()

    def discard(self) -> None:
        if self.pending is not None:
            shutil.rmtree(self.pending, ignore_errors=True)
            self.pending = None


@dataclass(frozen=True)
class InjectedFault:
    """A real exception raised inside a real trial, for the fault-matrix tests.

    `GAPSWEEP_INJECT_FAULT=KEY@STEP` makes the trial whose key starts with KEY (`*`: every
    trial) raise just before reporting STEP, in an attempt that started from scratch, so that
    its retry resumes from a checkpoint and goes on; `KEY@STEP!` raises in every attempt;
    `KEY@STEP+NAME` adds a metric NAME (one the trainer does not declare) to that report
    instead. Unset, as it is outside tests, nothing happens.
    """

    key_prefix: str | None = None
    step: int = -1
    every_attempt: bool = False
    extra_metric: str | None = None

    @classmethod
    def from_env(cls, key: str) -> InjectedFault:
        spec = os.environ.get(FAULT_ENV, "")
        match = re.fullmatch(r"(\*|[0-9a-f]+)@(\d+)(!?)(?:\+(\w+))?", spec)
        if match is None or not (match[1] == "*" or key.startswith(match[1])):
            return cls()
        return cls(match[1], int(match[2]), match[3] == "!", match[4])

    def maybe_raise(self, step: int, resumed: bool) -> None:
        if (
            self.key_prefix is not None
            and self.extra_metric is None
            and step == self.step
            and (self.every_attempt or not resumed)
        ):
            raise RuntimeError(f"injected fault at step {step}")

    def extra_metrics(self, step: int) -> dict[str, float]:
        if self.extra_metric is None or step != self.step:
            return {}
        return {self.extra_metric: 0.0}


def run_trial(
    param_space: dict[str, Any],
    *,
    trainer: str,
    configs: dict[str, str],
    resume: dict[str, str],
    names: dict[str, str],
) -> None:
    entered_at = time.time()
    key = param_space["trial_key"]
    entry = TRAINERS[trainer]
    # A grid's configs travel once, with the trainable; a searcher's come with their trial.
    config = entry.config_model.model_validate_json(param_space.get("config_json") or configs[key])
    gpus = take_assigned_resources()
    placement = Placement(
        node_id=ray.get_runtime_context().get_node_id(),
        host=socket.gethostname(),
        entered_at=entered_at,
    )
    checkpoints = TuneCheckpoints(resume.get(key), names.get(key, key))
    report = _Reporter(trainer, entry, placement, checkpoints, InjectedFault.from_env(key))
    try:
        final = entry.run(config, report, checkpoints, gpus)
        if report.reports == 0 and checkpoints.restored_step is not None:
            # Resumed at its last step (the driver died after recording the final checkpoint,
            # before the trial's end): the trainer had nothing left to report. Its last report
            # goes again, so that the driver records the trial's final metrics; the same step
            # replaces itself in the store, and MLflow already has it or gets it once.
            report(checkpoints.restored_step, checkpoints.restored_metrics or final)
    except (NonFiniteLossError, UndeclaredMetricError) as exc:
        # Retrying would fail the same way: the trial ends here, and the recorder marks it
        # failed with this reason instead of Tune retrying it under max_failures.
        step = exc.step if isinstance(exc, NonFiniteLossError) else report.last_step
        ended = TrialResult(step, {}, placement, checkpoints.restored_step, terminal_error=str(exc))
        checkpoints.discard()  # a state saved for the refused report is not one to resume from
        tune.report(ended.to_tune())


class _Reporter:
    """The `report` callback a trainer gets: checks the names against the trainer's
    declaration, then sends one TrialResult (with the checkpoint saved just before it)."""

    def __init__(
        self,
        trainer: str,
        entry: TrainerEntry,
        placement: Placement,
        checkpoints: TuneCheckpoints,
        fault: InjectedFault,
    ) -> None:
        self.trainer, self.declared = trainer, frozenset(entry.metrics)
        self.placement, self.checkpoints, self.fault = placement, checkpoints, fault
        self.last_step = 0
        self.reports = 0  # sent in this attempt

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        self.fault.maybe_raise(step, resumed=self.checkpoints.restored)
        metrics = self.fault.extra_metrics(step) | metrics
        check_declared(self.trainer, metrics, self.declared)
        self.last_step = step
        result = TrialResult(
            step=step,
            metrics=metrics,
            placement=self.placement,
            resumed_from=self.checkpoints.restored_step,
            reported_at=time.time(),
        )
        self.checkpoints.report(result)
        self.reports += 1


def take_assigned_resources() -> float:
    """Give torch as many threads as Ray gave the trial CPUs; returns the share of a GPU Ray
    gave it (0: none; the trainer then stays on the CPU whatever the process can see)."""
    # A trial given 1 CPU should not spawn a thread per core and fight its neighbours.
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1.0))))
    return float(assigned.get("GPU", 0.0))
