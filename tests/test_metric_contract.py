"""The result contract: every metric name a spec may choose is one its trainer reports, and a
trainer reporting a name it does not declare fails that trial, with the name in its error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from orchestrator.result import CONTRACT_KEYS, Placement, TrialResult, check_declared
from orchestrator.store.repository import ResultsStore
from orchestrator.trainer_registry import TRAINERS
from tests.clip_fixture import save_labelled_folder
from tests.helpers import orchestrator
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.reports import CUDA_METRICS, DUAL_ENCODER_METRICS


def test_the_dual_encoder_reports_every_name_it_declares_and_no_other(
    tiny_base: dict[str, Any], tmp_path: Path
) -> None:
    tiny_base["data"]["backgrounds"] = 2  # groups: worst_group_acc and group_acc_spread
    tiny_base["eval"]["shift_lambdas"] = [-0.5, 0.0, 0.5]  # the shift metrics, at the end
    root = save_labelled_folder(tmp_path / "folder", per_class=3)  # the folder_* metrics
    size = tiny_base["data"]["image_size"]
    folder = {"root": str(root), "image_size": size, "n_eval": 8, "loader_workers": 0}
    tiny_base["eval"]["folder"] = folder
    reported: set[str] = set()
    train_dual_encoder(TrialConfig.model_validate(tiny_base), lambda s, m: reported.update(m))
    # Classes without prompts: the shift's accuracy is by class means, under its own names.
    rng = np.random.default_rng(0)
    pairs = tmp_path / "pairs.npz"
    np.savez(
        pairs, a=rng.normal(size=(80, 4)), b=rng.normal(size=(80, 6)), labels=np.arange(80) % 3
    )
    tiny_base["data"] = {"name": "paired_features", "path": str(pairs), "n_eval": 20}
    tiny_base["model"] = {"embed_dim": 8, "image": {"kind": "mlp"}, "text": {"kind": "mlp"}}
    del tiny_base["eval"]["folder"]
    centroid: set[str] = set()
    train_dual_encoder(TrialConfig.model_validate(tiny_base), lambda s, m: centroid.update(m))
    assert {"shift_best_centroid_acc", "shift_heldout_centroid_acc"} <= centroid
    assert not {n for n in centroid if "zero_shot" in n}
    reported |= centroid
    on_a_gpu = torch.cuda.is_available()  # `auto` takes it here, outside a runner
    assert reported == set(DUAL_ENCODER_METRICS) - (set() if on_a_gpu else set(CUDA_METRICS))


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_declared_names_are_numbers_apart_from_the_contract_keys(trainer: str) -> None:
    declared = TRAINERS[trainer].metrics
    assert len(set(declared)) == len(declared)
    assert not set(declared) & CONTRACT_KEYS
    metrics = dict.fromkeys(declared, 0.5)
    check_declared(trainer, metrics, declared)  # raises for an undeclared name
    result = TrialResult(3, metrics, Placement("node", "host", 1.0), resumed_from=2)
    wire = {**result.to_tune(), "time_total_s": 1.5, "training_iteration": 4}
    assert TrialResult.from_tune(wire, declared) == result


@pytest.mark.parametrize(
    ("trainer", "metric", "accepted"),
    [
        ("dual_encoder", "zero_shot_acc", True),
        ("dual_encoder", "linear_separability", False),  # analyze reports it; trials do not
        ("dual_encoder", "min_loss_gap", False),
        ("landscape", "min_loss_gap", True),
        ("landscape", "zero_shot_acc", False),
    ],
)
def test_a_spec_may_choose_only_a_metric_its_trainer_reports(
    write_spec: Callable[..., Path], trainer: str, metric: str, accepted: bool
) -> None:
    spec = write_spec({"name": "m", "trainer": trainer, "metric": {"name": metric, "mode": "max"}})
    result = orchestrator("validate", str(spec), cwd=spec.parent)
    if accepted:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"unknown metric {metric!r} for trainer {trainer}" in lines[0]


@pytest.mark.slow
def test_a_trainer_reporting_an_undeclared_name_fails_that_trial(
    write_spec: Callable[..., Path],
) -> None:
    spec = write_spec(
        {
            "name": "undeclared",
            "trainer": "landscape",
            "base": {"shifts": 6},
            "parameters": {"temperature": {"grid": [0.01, 0.1]}},
            "metric": {"name": "min_loss_gap", "mode": "max"},
            "max_failures": 2,  # not retried: the error is terminal
        }
    )
    result = orchestrator(
        "submit", str(spec), cwd=spec.parent, GAPSWEEP_INJECT_FAULT="*@3+bogus_gap"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    with ResultsStore(f"sqlite:///{spec.parent / 'results.db'}") as store:
        trials = store.trials("undeclared")
        series = [store.metric_series("undeclared", t.key, "gap_norm") for t in trials]
    assert [t.status for t in trials] == ["failed", "failed"]
    for trial, steps in zip(trials, series, strict=True):
        assert trial.attempts == 1 and trial.error is not None
        assert "does not declare: bogus_gap" in trial.error
        assert [step for step, _ in steps] == [0, 1, 2]  # what came before is kept, once
    assert "bogus_gap" in result.stderr
