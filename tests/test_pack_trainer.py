"""Packs (trainers/pack/): K dual encoders trained as one vectorised model, each member a trial
of its own whose numbers are those of the same trial trained alone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.checkpoint import TrainState, load_state, save_state
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.errors import NonFiniteLossError
from trainers.pack.adam import StackedAdam, StackedGroup
from trainers.pack.grouping import differing_settings, packs, why_not_packable
from trainers.pack.train import Member, train_pack

N_EVAL = 64
BASE: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 256, "n_eval": N_EVAL},
    "model": {"embed_dim": 16},
    # One epoch: float32 rounding apart, packed and alone drift apart as training goes on; at
    # 8 steps every metric is within 2e-5 of its value alone, at 16 a near-cancelling one
    # (centroid_cosine ~0.1) is 2e-4 relative (docs/packing.md).
    "optim": {"batch_size": 32, "epochs": 1, "lr": 2e-3},
    "eval": {"every_steps": 2},
}
MLP: dict[str, Any] = {
    "data": {"name": "gaussian", "dim": 16, "n_train": 256, "n_eval": N_EVAL},
    "model": {
        "embed_dim": 16,
        "image": {"kind": "mlp", "depth": 2, "width": 32},
        "text": {"kind": "mlp", "depth": 2, "width": 32},
    },
}
# Each setting a pack's members may differ in (trainers/pack/grouping.py), one member each.
VARIED: list[dict[str, Any]] = [
    {},
    {"loss": {"temperature": 0.05}},
    {"seed": 3},
    {"model": {"init": {"seed": 7}}},
    {"optim": {"lr": 5e-3}},
    {"optim": {"weight_decay": 0.1}},
    {"loss": {"learn_temperature": True}},
]
# Counted metrics move in steps of 1/N_EVAL: a pair whose two candidates are within float
# rounding of each other may fall either way, so these may differ by that many counts.
COUNTED = ("acc", "recall")
COUNT_SLACK = 2 / N_EVAL


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """As a one-CPU trial runs: the float sums then split the same way on every machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def configs(*overrides: dict[str, Any], base: dict[str, Any] = BASE) -> list[TrialConfig]:
    return [TrialConfig.model_validate(merged(base, o)) for o in overrides]


Series = list[tuple[int, dict[str, float]]]


def alone(config: TrialConfig) -> Series:
    series: Series = []
    train_dual_encoder(config, lambda step, metrics: series.append((step, dict(metrics))))
    return series


def packed(
    cfgs: list[TrialConfig], hooks: list[Any] | None = None
) -> tuple[list[Series], list[Any]]:
    series: list[Series] = [[] for _ in cfgs]
    members = [
        Member(c, lambda step, metrics, s=s: s.append((step, dict(metrics))), hook)
        for c, s, hook in zip(cfgs, series, hooks or [None] * len(cfgs), strict=True)
    ]
    return series, train_pack(members)


def assert_same_series(got: Series, want: Series) -> None:
    assert [step for step, _ in got] == [step for step, _ in want]
    for (step, g), (_, w) in zip(got, want, strict=True):
        assert g.keys() == w.keys(), step
        for name, value in w.items():
            if name.startswith("peak_") or (math.isnan(value) and math.isnan(g[name])):
                continue
            if any(word in name for word in COUNTED):
                assert abs(g[name] - value) <= COUNT_SLACK + 1e-12, (step, name)
            else:
                assert g[name] == pytest.approx(value, rel=1e-4, abs=1e-6), (step, name)


def test_stacked_adam_updates_each_member_as_torch_adam_alone() -> None:
    """Per-member rates and decays, a warm-up scale, ten steps of random gradients."""
    generator = torch.Generator().manual_seed(0)
    rates, decays = [1e-3, 3e-2, 5e-4], [0.0, 0.1, 0.01]
    start = torch.randn(3, 4, 5, generator=generator)
    grads = [torch.randn(3, 4, 5, generator=generator) for _ in range(10)]
    stacked = start.clone().requires_grad_(True)
    lr = torch.tensor(rates, dtype=torch.float64)
    adam = StackedAdam([StackedGroup([stacked], lr, torch.tensor(decays))])
    singles = [start[k].clone().requires_grad_(True) for k in range(3)]
    torches = [
        torch.optim.Adam([p], lr=r, weight_decay=d, foreach=False)
        for p, r, d in zip(singles, rates, decays, strict=True)
    ]
    for step, grad in enumerate(grads, start=1):
        scale = min(step / 4, 1.0)
        adam.set_scale(scale)
        stacked.grad = grad.clone()
        adam.step()
        for k, (p, opt) in enumerate(zip(singles, torches, strict=True)):
            opt.param_groups[0]["lr"] = rates[k] * scale
            p.grad = grad[k].clone()
            opt.step()
    for k, p in enumerate(singles):
        torch.testing.assert_close(stacked.detach()[k], p.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("base", [BASE, merged(BASE, MLP)], ids=["cnn+transformer", "mlp"])
def test_a_packed_member_reports_what_it_reports_alone(base: dict[str, Any]) -> None:
    cfgs = configs(*VARIED, base=base)
    series, outcomes = packed(cfgs)
    assert all(not isinstance(o, Exception) for o in outcomes)
    for config, got in zip(cfgs, series, strict=True):
        assert_same_series(got, alone(config))


def test_a_member_whose_loss_diverges_fails_alone() -> None:
    """tau = 1e-45: 1/tau overflows float32; the member's loss is not finite from step 1."""
    cfgs = configs({}, {"loss": {"temperature": 1e-45}}, {"seed": 3})
    series, outcomes = packed(cfgs)
    assert isinstance(outcomes[1], NonFiniteLossError)
    assert outcomes[1].step == 1
    assert [step for step, _ in series[1]] == [0]  # it stopped reporting when it failed
    for k in (0, 2):
        assert not isinstance(outcomes[k], Exception)
        assert_same_series(series[k], alone(cfgs[k]))


class StopAfter(Exception):
    """The pack's process killed just after a report."""


class FolderHook:
    """A member's checkpoints in a folder of its own, restored on the next run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def restore(self) -> TrainState | None:
        return load_state(self.folder) if self.folder.is_dir() else None

    def save(self, state: TrainState) -> None:
        save_state(state, self.folder)


def test_a_pack_resumed_from_its_members_checkpoints_goes_on_as_uninterrupted(
    tmp_path: Path,
) -> None:
    # One member learns its temperature: only its own Adam holds moments for it, and the
    # resumed pack must give the others zeros there, as the uninterrupted pack does.
    learns = {"loss": {"temperature": 0.05, "learn_temperature": True}}
    cfgs = configs({}, learns, {"seed": 3, "optim": {"lr": 5e-3}})
    whole, _ = packed(cfgs)
    hooks = [FolderHook(tmp_path / str(k)) for k in range(len(cfgs))]
    cut: list[Series] = [[] for _ in cfgs]

    def stop_at_4(k: int) -> Any:
        def report(step: int, metrics: dict[str, float]) -> None:
            cut[k].append((step, dict(metrics)))
            if step == 4 and k == len(cfgs) - 1:
                raise StopAfter

        return report

    with pytest.raises(StopAfter):
        pairs = enumerate(zip(cfgs, hooks, strict=True))
        train_pack([Member(c, stop_at_4(k), h) for k, (c, h) in pairs])
    rest, outcomes = packed(cfgs, hooks)
    assert all(not isinstance(o, Exception) for o in outcomes)
    for k in range(len(cfgs)):
        assert [s for s, _ in cut[k]] == [0, 2, 4]
        assert [s for s, _ in rest[k]] == [6, 8]
        assert_same_series(cut[k] + rest[k], whole[k])
    # A member's checkpoint is the unpacked trainer's: the trial resumes from it alone.
    hook = FolderHook(tmp_path / "0")
    tail: Series = []
    train_dual_encoder(cfgs[0], lambda step, m: tail.append((step, dict(m))), hook)
    assert tail == []  # the member had finished: nothing left to train or report


def test_trials_are_grouped_by_what_they_share() -> None:
    cfgs = configs(
        {},
        {"loss": {"temperature": 0.05}, "seed": 4},
        {"optim": {"batch_size": 16}},  # another batch size: another pack
        {"model": {"image": {"kind": "vit"}}},  # not vectorised: alone
        {"optim": {"lr": 1e-2}},
    )
    assert packs(cfgs, 8) == [[0, 1, 4], [2], [3]]
    assert packs(cfgs, 2) == [[0, 1], [2], [3], [4]]
    assert packs(cfgs, 1) == [[0], [1], [2], [3], [4]]
    assert why_not_packable(cfgs[3]) == "vit towers are not vectorised"
    assert differing_settings(cfgs[:3]) == ["optim.batch_size"]
    with pytest.raises(ValueError, match=r"not one pack: optim\.batch_size"):
        train_pack([Member(c, lambda step, metrics: None) for c in cfgs[:3]])


def test_members_resumed_at_different_steps_train_as_a_pack_per_step(tmp_path: Path) -> None:
    """A resubmitted sweep re-packs what did not complete: here one member cut at step 4 and
    one never started; each goes on as it would alone."""
    cfgs = configs({}, {"loss": {"temperature": 0.05}, "seed": 5})
    hooks = [FolderHook(tmp_path / "0"), FolderHook(tmp_path / "1")]
    cut: Series = []

    def stop_at_4(step: int, metrics: dict[str, float]) -> None:
        cut.append((step, dict(metrics)))
        if step == 4:
            raise StopAfter

    with pytest.raises(StopAfter):
        train_pack([Member(cfgs[0], stop_at_4, hooks[0])])
    calls: list[int] = []
    series: list[Series] = [[], []]
    members = [
        Member(c, lambda step, m, s=s: s.append((step, dict(m))), h)
        for c, s, h in zip(cfgs, series, hooks, strict=True)
    ]
    outcomes = train_pack(members, after_report=lambda step, failed: calls.append(step))
    assert all(not isinstance(o, Exception) for o in outcomes)
    assert [s for s, _ in series[0]] == [6, 8]
    assert_same_series(cut + series[0], alone(cfgs[0]))
    assert_same_series(series[1], alone(cfgs[1]))
    assert calls == [0, 2, 4, 6, 8, 6, 8]  # the fresh pack first, then the one from step 5
