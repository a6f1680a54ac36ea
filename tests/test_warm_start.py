"""Warm starts named by sweep and trial, resolved from the results store of a real tiny sweep
run through `orchestrator submit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import SpecError
from orchestrator.plan import expand
from orchestrator.spec import load_spec
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from orchestrator.warm_start import checkpoint_of, resolve_warm_starts
from tests.test_end_to_end import orchestrator
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_BASE

    workdir = tmp_path_factory.mktemp("warm")
    base = {**TINY_BASE, "loss": {"temperature": 0.07, "learn_temperature": True}}
    spec = {"name": "pre", "base": base, "parameters": {"seed": {"grid": [0, 1]}},
            "metric": {"name": "loss", "mode": "min"}}  # fmt: skip
    (workdir / "pre.yaml").write_text(yaml.safe_dump(spec))
    result = orchestrator("submit", "pre.yaml", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def finetune_plan(workdir: Path, base: dict[str, Any], trial: str) -> Any:
    base = {
        **base,
        "model": {**base["model"], "init": {"warm_start": {"sweep": "pre", "trial": trial}}},
    }
    spec = {"name": "ft", "base": base, "parameters": {"loss.temperature": {"grid": [0.01, 1.0]}}}
    (workdir / "ft.yaml").write_text(yaml.safe_dump(spec))
    return expand(load_spec(workdir / "ft.yaml"))


def test_best_resolves_to_the_best_trials_final_checkpoint(
    pretrained: Path, tiny_base: dict[str, Any]
) -> None:
    store = ResultsStore(f"sqlite:///{pretrained / 'results.db'}")
    try:
        plan = finetune_plan(pretrained, tiny_base, "best")
        resolved = resolve_warm_starts(plan, store)
        trials = store.trials("pre")
    finally:
        store.close()
    best = min(trials, key=lambda t: t.metrics["loss"])
    assert [t.key for t in resolved.trials] == [t.key for t in plan.trials]  # keys name the source
    assert {t.config.model.init.checkpoint for t in resolved.trials} == {best.checkpoint_path}
    # Started from the source's final weights, on the source's data, the step-0 gap is its last.
    config = resolved.trials[0].config.model_copy(deep=True)
    at_start: list[dict[str, float]] = []
    frozen = TrialConfig.model_validate(
        {**config.model_dump(), "seed": best.config["seed"], "optim": {"epochs": 0}}
    )
    train_dual_encoder(frozen, lambda s, m: at_start.append(m))
    assert at_start[0]["gap_norm"] == pytest.approx(best.metrics["gap_norm"], abs=1e-4)


def test_a_trial_named_by_key(pretrained: Path) -> None:
    store = ResultsStore(f"sqlite:///{pretrained / 'results.db'}")
    try:
        trial = store.trials("pre")[1]
        assert checkpoint_of(store, "pre", trial.key) == trial.checkpoint_path
        with pytest.raises(SpecError, match="has no trial 'nope'"):
            checkpoint_of(store, "pre", "nope")
        with pytest.raises(SpecError, match="sweep 'missing' is not in the results store"):
            checkpoint_of(store, "missing", "best")
    finally:
        store.close()


def test_an_unfinished_source_is_refused(pretrained: Path, tiny_base: dict[str, Any]) -> None:
    store = ResultsStore(f"sqlite:///{pretrained / 'results.db'}")
    try:
        store.upsert_sweep("pending_pre", "dual_encoder", "name: pending_pre", "h", ("loss", "min"))
        store.register_trials("pending_pre", [NewTrial("k1", "seed=0", 0, {}, {"seed": 0})])
        with pytest.raises(SpecError, match=r"trial k1 .* has not completed"):
            checkpoint_of(store, "pending_pre", "k1")
        with pytest.raises(SpecError, match="no completed trial"):
            checkpoint_of(store, "pending_pre", "best")
    finally:
        store.close()
