"""The function Ray Tune runs in a worker: a trial's key in, the trainer run, results reported.

Only the trial key travels in Tune's param space; the validated configs travel once through
`tune.with_parameters`, so Tune's own config handling never touches (or mangles) them.
"""

from __future__ import annotations

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

from orchestrator.trainer_registry import TRAINERS
from trainers.checkpoint import TrainState, load_state, save_state
from trainers.errors import NonFiniteLossError

FAULT_ENV = "GAPSWEEP_INJECT_FAULT"
TERMINAL_ERROR = "terminal_error"  # a result key: the trial ended with an error not worth a retry


class TuneCheckpoints:
    """The trainers' checkpoint hook on Ray Tune: a saved state travels with the next report.

    On restore, Tune's own latest checkpoint of this trial wins (a retry after a failure);
    otherwise `resume_from` (the last checkpoint the results store knows of, for a sweep
    submitted again after the driver died).
    """

    def __init__(self, resume_from: str | None) -> None:
        self.resume_from = resume_from
        self.pending: Path | None = None
        self.restored_step: int | None = None

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
                return load_state(Path(directory))
        if self.resume_from is not None and Path(self.resume_from).exists():
            return load_state(Path(self.resume_from))
        return None

    def save(self, state: TrainState) -> None:
        self._discard()
        self.pending = Path(tempfile.mkdtemp(prefix="gapsweep-ckpt-"))
        save_state(state, self.pending)

    def report(self, metrics: dict[str, Any]) -> None:
        if self.pending is None:
            tune.report(metrics)
            return
        try:
            # Tune copies the folder into the trial's storage before report returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.pending)))
        finally:
            self._discard()

    def _discard(self) -> None:
        if self.pending is not None:
            shutil.rmtree(self.pending, ignore_errors=True)
            self.pending = None


@dataclass(frozen=True)
class InjectedFault:
    """A real exception raised inside a real trial, for the fault-matrix tests.

    `GAPSWEEP_INJECT_FAULT=KEY@STEP` makes the trial whose key starts with KEY (`*`: every
    trial) raise just before reporting STEP, in an attempt that started from scratch, so that
    its retry resumes from a checkpoint and goes on; `KEY@STEP!` raises in every attempt.
    Unset, as it is outside tests, nothing happens.
    """

    key_prefix: str | None = None
    step: int = -1
    every_attempt: bool = False

    @classmethod
    def from_env(cls, key: str) -> InjectedFault:
        spec = os.environ.get(FAULT_ENV, "")
        match = re.fullmatch(r"(\*|[0-9a-f]+)@(\d+)(!?)", spec)
        if match is None or not (match[1] == "*" or key.startswith(match[1])):
            return cls()
        return cls(match[1], int(match[2]), match[3] == "!")

    def maybe_raise(self, step: int, resumed: bool) -> None:
        if (
            self.key_prefix is not None
            and step == self.step
            and (self.every_attempt or not resumed)
        ):
            raise RuntimeError(f"injected fault at step {step}")


def run_trial(
    param_space: dict[str, Any], *, trainer: str, configs: dict[str, str], resume: dict[str, str]
) -> None:
    entered_at = time.time()
    key = param_space["trial_key"]
    entry = TRAINERS[trainer]
    config = entry.config_model.model_validate_json(configs[key])
    _match_threads_to_cpus()
    placement: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "entered_at": entered_at,  # worker clock; with reported_at, for GAPSWEEP_TRACE
    }
    checkpoints = TuneCheckpoints(resume.get(key))
    fault = InjectedFault.from_env(key)

    def report(step: int, metrics: dict[str, float]) -> None:
        fault.maybe_raise(step, resumed=checkpoints.restored)
        resumed = {
            "resumed_from": -1 if checkpoints.restored_step is None else checkpoints.restored_step
        }
        timing = {"reported_at": time.time()}
        checkpoints.report({**metrics, "step": step, **placement, **resumed, **timing})

    try:
        entry.run(config, report, checkpoints)
    except NonFiniteLossError as exc:
        # Retrying would diverge the same way: the trial ends here, and the recorder marks it
        # failed with this reason instead of Tune retrying it under max_failures.
        tune.report({"step": exc.step, **placement, TERMINAL_ERROR: str(exc)})


def _match_threads_to_cpus() -> None:
    # A trial given 1 CPU should not spawn a thread per core and fight its neighbours.
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    cpus = assigned.get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
