"""Checkpoints of the dual_encoder trainer: a resumed run repeats the uninterrupted one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from trainers.checkpoint import TrainState, load_state, save_state
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.errors import DataError


class MemoryHook:
    """A checkpoint hook that keeps states in memory (the orchestrator's goes to Ray Tune)."""

    def __init__(self, resume_from: TrainState | None = None) -> None:
        self.saved: dict[int, TrainState] = {}
        self.resume_from = resume_from

    def restore(self) -> TrainState | None:
        return self.resume_from

    def save(self, state: TrainState) -> None:
        self.saved[state.step] = copy.deepcopy(state)  # the live tensors change after save


def run(config: TrialConfig, hook: MemoryHook) -> list[tuple[int, dict[str, float]]]:
    reports: list[tuple[int, dict[str, float]]] = []
    train_dual_encoder(config, lambda step, m: reports.append((step, m)), hook)
    return reports


@pytest.fixture
def config(tiny_base: dict[str, Any]) -> TrialConfig:
    tiny_base["optim"]["epochs"] = 3  # 12 steps over 3 epochs, reports every 2
    return TrialConfig.model_validate(tiny_base)


def test_a_state_is_saved_with_every_report(config: TrialConfig) -> None:
    hook = MemoryHook()
    reports = run(config, hook)
    assert sorted(hook.saved) == [step for step, _ in reports] == [0, 2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("resume_at", [0, 6, 12])
def test_resumed_run_continues_exactly(config: TrialConfig, resume_at: int) -> None:
    full_hook = MemoryHook()
    full = run(config, full_hook)
    resumed = run(config, MemoryHook(resume_from=full_hook.saved[resume_at]))
    # No step is reported twice and none is missing; every value matches (CPU, no dropout).
    assert resumed == [(step, m) for step, m in full if step > resume_at]


def test_state_file_round_trip(config: TrialConfig, tmp_path: Path) -> None:
    hook = MemoryHook()
    run(config, hook)
    path = save_state(hook.saved[6], tmp_path / "ckpt")
    assert path.name == "state.pt" and not list(tmp_path.glob("ckpt/.*"))
    loaded = load_state(tmp_path / "ckpt")
    assert loaded.step == 6
    resumed = run(config, MemoryHook(resume_from=loaded))
    assert [s for s, _ in resumed] == [8, 10, 12]


def test_bad_checkpoints_are_clear_errors(config: TrialConfig, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no checkpoint there"):
        load_state(tmp_path)
    (tmp_path / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_state(tmp_path)
    hook = MemoryHook()
    run(config, hook)
    wider = config.model_copy(update={"model": config.model.model_copy(update={"embed_dim": 16})})
    with pytest.raises(DataError, match="does not fit"):
        run(wider, MemoryHook(resume_from=hook.saved[2]))


def test_a_run_resumed_inside_its_warm_up_continues_exactly(tiny_base: dict[str, Any]) -> None:
    """The warm-up rate is a function of the step, not scheduler state in the checkpoint."""
    tiny_base["optim"].update(epochs=3, warmup_steps=8)
    tiny_base["loss"] = {"temperature": 0.07, "learn_temperature": True, "temperature_lr": 0.05}
    config = TrialConfig.model_validate(tiny_base)
    full_hook = MemoryHook()
    full = run(config, full_hook)
    resumed = run(config, MemoryHook(resume_from=full_hook.saved[4]))
    assert resumed == [(step, m) for step, m in full if step > 4]
