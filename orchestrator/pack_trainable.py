"""The function a Ray worker runs for a pack (orchestrator/packing.py): its members trained as
one vectorised model (trainers/pack/), each step's reports sent to the driver as one result with
one checkpoint.

The checkpoint holds a folder per member with the state the unpacked trainer saves (so a member
resumes packed, re-packed with others, or alone) and the report it travelled with, beside
FAILED_FILE: the members that failed alone, which a retry of the pack does not run again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import PlacementGroupFactory

from orchestrator.result import (
    PACK_FAILED,
    PACK_MEMBERS,
    PACK_RESUMED_FROM,
    STEP,
    Placement,
    TrialResult,
    UndeclaredMetricError,
    check_declared,
)
from orchestrator.spec import SweepSpec
from orchestrator.trainable import REPORTED_FILE, run_trial, take_assigned_resources
from orchestrator.trainer_registry import TRAINERS
from trainers.checkpoint import TrainState, load_state, save_state

FAILED_FILE = "failed.json"


class PackCheckpoints:
    """Where the members' states come from (Tune's latest checkpoint of the pack, else each
    member's last recorded one) and where the next one is gathered.

    Every checkpoint of the pack holds every member's latest state, not only those saved at its
    step: Tune keeps the pack's last two checkpoints, and a member that finished earlier (its
    pack trained members resumed at different steps one group after another) must not be left
    pointing at a deleted one. Members' latest folders wait in `latest`, hard-linked into each
    checkpoint.
    """

    def __init__(self, resume: dict[str, str], names: dict[str, str]) -> None:
        self.resume = resume
        self.names = names  # the members' names, on the pictures drawn of their final states
        self.restored: Path | None = None
        self.pending: Path | None = None
        self.latest = Path(tempfile.mkdtemp(prefix="gapsweep-pack-latest-"))
        self.failed: dict[str, str] = {}  # members that failed alone, in this pack's life
        self.restored_steps: dict[str, int] = {}
        self.restored_reports: dict[str, dict[str, float]] = {}
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            self.restored = Path(tempfile.mkdtemp(prefix="gapsweep-pack-restored-"))
            checkpoint.to_directory(str(self.restored))
            failed = self.restored / FAILED_FILE
            if failed.is_file():
                self.failed = dict(json.loads(failed.read_text()))

    def restore(self, key: str) -> TrainState | None:
        folder = None if self.restored is None else self.restored / key
        if folder is None or not folder.is_dir():
            found = self.resume.get(key)
            folder = Path(found) if found and Path(found).exists() else None
        if folder is None:
            return None
        state = load_state(folder)
        shutil.copytree(folder, self.latest / key)  # carried until the member saves anew
        self.restored_steps[key] = state.step
        reported = folder / REPORTED_FILE
        if reported.is_file():
            saved = json.loads(reported.read_text())
            if saved.get("step") == state.step:
                self.restored_reports[key] = dict(saved["metrics"])
        return state

    def save(self, key: str, state: TrainState) -> None:
        from orchestrator.tracking.artifacts import draw_beside  # matplotlib: only when drawn

        save_state(state, self._pending() / key)
        draw_beside(self._pending() / key, self.names.get(key, key))

    def _pending(self) -> Path:
        if self.pending is None:
            self.pending = Path(tempfile.mkdtemp(prefix="gapsweep-pack-ckpt-"))
        return self.pending

    def ship(self, result: dict[str, Any], reports: dict[str, dict[str, Any]]) -> None:
        """Send one result to the driver, with every member's latest state."""
        for key in self.failed:  # not resumed: a rerun of a failed member starts afresh
            shutil.rmtree(self.latest / key, ignore_errors=True)
        if self.pending is None and not any(self.latest.iterdir()):
            tune.report(result)
            return
        pending = self._pending()
        try:
            saved_now = [folder.name for folder in pending.iterdir()]
            for key in saved_now:
                metrics = reports[key]
                saved = {"step": metrics[STEP], "metrics": _declared_only(metrics)}
                (pending / key / REPORTED_FILE).write_text(json.dumps(saved))
            for carried in self.latest.iterdir():
                if carried.name not in saved_now:
                    shutil.copytree(carried, pending / carried.name, copy_function=os.link)
            (pending / FAILED_FILE).write_text(json.dumps(self.failed))
            checkpoint = tune.Checkpoint.from_directory(str(pending))
            tune.report(result, checkpoint=checkpoint)
            for key in saved_now:  # now each of these members' latest
                shutil.rmtree(self.latest / key, ignore_errors=True)
                os.replace(pending / key, self.latest / key)
        finally:
            shutil.rmtree(pending, ignore_errors=True)
            self.pending = None

    def close(self) -> None:
        shutil.rmtree(self.latest, ignore_errors=True)
        if self.restored is not None:
            shutil.rmtree(self.restored, ignore_errors=True)


class _MemberHook:
    def __init__(self, key: str, checkpoints: PackCheckpoints) -> None:
        self.key, self.checkpoints = key, checkpoints

    def restore(self) -> TrainState | None:
        return self.checkpoints.restore(self.key)

    def save(self, state: TrainState) -> None:
        self.checkpoints.save(self.key, state)


class _PackReporter:
    """Gathers the members' reports of a step and ships them as one result."""

    def __init__(self, trainer: str, placement: Placement, keys: list[str], ckpts: PackCheckpoints):
        self.trainer, self.declared = trainer, frozenset(TRAINERS[trainer].metrics)
        self.placement, self.keys, self.checkpoints = placement, keys, ckpts
        self.reports: dict[str, dict[str, Any]] = {}
        self.reported: set[str] = set()  # members that reported in this attempt

    def member(self, key: str) -> Callable[[int, dict[str, float]], None]:
        def report(step: int, metrics: dict[str, float]) -> None:
            check_declared(self.trainer, metrics, self.declared)
            self.reports[key] = {**metrics, STEP: step}

        return report

    def after_report(self, step: int, failed: dict[int, Exception]) -> None:
        self.ship(step, {self.keys[i]: f"{type(e).__name__}: {e}" for i, e in failed.items()})

    def ship(self, step: int, failed: dict[str, str]) -> None:
        self.checkpoints.failed |= failed
        result = TrialResult(step, {}, self.placement, reported_at=time.time()).to_tune()
        resumed = self.checkpoints.restored_steps
        result |= {
            PACK_MEMBERS: self.reports,
            PACK_RESUMED_FROM: {k: resumed[k] for k in self.reports if k in resumed},
            PACK_FAILED: failed,
        }
        reports, self.reports = self.reports, {}
        self.reported |= set(reports)
        self.checkpoints.ship(result, reports)


def tune_resources(
    spec: SweepSpec, packs: dict[str, tuple[str, ...]]
) -> Callable[[dict[str, Any]], PlacementGroupFactory]:
    """Each Tune trial's resources: a trial's own, as the spec says; a pack's CPUs summed over
    its members, up to the largest node's (a pack is one process), and a trial's share of a
    GPU (the pack is there to fill the GPU one small trial leaves idle)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    nodes = [n["Resources"].get("CPU", 0.0) for n in alive]
    largest = max([spec.resources.cpu, *nodes])
    gpu = {"GPU": spec.resources.gpu} if spec.resources.gpu else {}

    def of(config: dict[str, Any]) -> PlacementGroupFactory:
        members = len(packs.get(config["trial_key"], ())) or 1
        return PlacementGroupFactory([{"CPU": min(spec.resources.cpu * members, largest), **gpu}])

    return of


def run_unit(
    param_space: dict[str, Any],
    *,
    trainer: str,
    configs: dict[str, str],
    resume: dict[str, str],
    packs: dict[str, list[str]],
    names: dict[str, str],
) -> None:
    """What Tune runs for each of its trials: a pack's members trained together, or a trial
    alone (trainable.run_trial)."""
    if param_space["trial_key"] not in packs:
        run_trial(param_space, trainer=trainer, configs=configs, resume=resume, names=names)
    else:
        _run_pack(packs[param_space["trial_key"]], trainer, configs, resume, names)


def _run_pack(
    pack: list[str],
    trainer: str,
    configs: dict[str, str],
    resume: dict[str, str],
    names: dict[str, str],
) -> None:
    from trainers.pack.train import Member, train_pack  # torch is imported in workers only

    entered_at = time.time()
    gpus = take_assigned_resources()
    node = ray.get_runtime_context().get_node_id()
    placement = Placement(node_id=node, host=socket.gethostname(), entered_at=entered_at)
    checkpoints = PackCheckpoints(resume, names)
    keys = [k for k in pack if k not in checkpoints.failed]
    reporter = _PackReporter(trainer, placement, keys, checkpoints)
    entry = TRAINERS[trainer]
    members = [
        Member(
            entry.config_model.model_validate_json(configs[k]),  # type: ignore[arg-type]
            reporter.member(k),
            _MemberHook(k, checkpoints),
        )
        for k in keys
    ]
    try:
        outcomes = train_pack(members, gpus, reporter.after_report)
        _ship_the_rest(reporter, keys, outcomes)  # while the members' latest states are kept
    except UndeclaredMetricError as exc:  # the trainer's own error: every member fails with it
        reporter.reports = {}
        reporter.ship(0, {k: f"UndeclaredMetricError: {exc}" for k in keys})
    finally:
        checkpoints.close()


def _ship_the_rest(reporter: _PackReporter, keys: list[str], outcomes: Sequence[object]) -> None:
    """Failures not yet shipped (every member failed before a report), and the last report
    again of members resumed at their final step, which had nothing left to report."""
    checkpoints = reporter.checkpoints
    unsent = {
        k: f"{type(o).__name__}: {o}"
        for k, o in zip(keys, outcomes, strict=True)
        if isinstance(o, Exception) and k not in checkpoints.failed
    }
    for k in keys:
        if k not in reporter.reported and k in checkpoints.restored_reports:
            step = checkpoints.restored_steps[k]
            reporter.reports[k] = {**checkpoints.restored_reports[k], STEP: step}
    if unsent or reporter.reports:
        step = max((int(m[STEP]) for m in reporter.reports.values()), default=0)
        reporter.ship(step, unsent)


def _declared_only(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != STEP}
