"""Expansion of specs into trials: grids, random draws, stable keys and trial names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import expand, flatten, trial_key, trial_name
from orchestrator.spec import load_spec
from tests.helpers import self_contained_sweeps
from trainers.config import TrialConfig


def plan_of(write_spec: Callable[..., Path], spec: dict[str, Any]) -> Any:
    return expand(load_spec(write_spec(spec)))


def test_grid_is_the_cartesian_product_in_order(write_spec: Callable[..., Path]) -> None:
    plan = plan_of(
        write_spec,
        {
            "name": "g",
            "parameters": {"loss.temperature": {"grid": [0.01, 1.0]}, "seed": {"grid": [0, 1, 2]}},
        },
    )
    assert [t.varied for t in plan.trials] == [
        {"loss.temperature": tau, "seed": seed} for tau in (0.01, 1.0) for seed in (0, 1, 2)
    ]
    assert plan.trials[4].config.loss.temperature == 1.0
    assert plan.trials[4].config.seed == 1


def test_grid_times_num_samples_with_drawn_values(write_spec: Callable[..., Path]) -> None:
    plan = plan_of(
        write_spec,
        {
            "name": "g",
            "num_samples": 3,
            "parameters": {"seed": {"grid": [0, 1]}, "optim.lr": {"loguniform": [1e-4, 1e-2]}},
        },
    )
    assert len(plan.trials) == 6
    assert all(1e-4 <= t.config.optim.lr <= 1e-2 for t in plan.trials)


def test_random_search_draws_within_domains_reproducibly(
    write_spec: Callable[..., Path],
) -> None:
    spec = {
        "name": "r",
        "search": "random",
        "num_samples": 20,
        "seed": 7,
        "parameters": {
            "loss.temperature": {"uniform": [0.01, 0.5]},
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
            "seed": {"randint": [0, 1000]},
            "model.init.scheme": {"choice": ["default", "xavier", "orthogonal"]},
        },
    }
    first, second = plan_of(write_spec, spec), plan_of(write_spec, spec)
    assert [t.key for t in first.trials] == [t.key for t in second.trials]
    assert len(first.trials) == 20
    for t in first.trials:
        assert 0.01 <= t.config.loss.temperature <= 0.5
        assert 1e-4 <= t.config.optim.lr <= 1e-2
        assert 0 <= t.config.seed < 1000
    assert len({t.config.model.init.scheme for t in first.trials}) > 1
    other = plan_of(write_spec, {**spec, "seed": 8})
    assert [t.key for t in other.trials] != [t.key for t in first.trials]


def test_duplicate_draws_are_dropped(write_spec: Callable[..., Path]) -> None:
    plan = plan_of(
        write_spec,
        {
            "name": "r",
            "search": "random",
            "num_samples": 30,
            "parameters": {"seed": {"choice": [0, 1]}},
        },
    )
    assert len(plan.trials) == 2
    assert plan.duplicates_dropped == 28


def test_key_is_a_content_hash_of_the_resolved_config() -> None:
    explicit = TrialConfig.model_validate({"loss": {"temperature": 0.07}})
    default = TrialConfig()
    assert trial_key("dual_encoder", explicit) == trial_key("dual_encoder", default)
    changed = TrialConfig.model_validate({"loss": {"temperature": 0.0700001}})
    assert trial_key("dual_encoder", changed) != trial_key("dual_encoder", default)
    # Stable across runs and processes: a fixed hash of the default config's JSON.
    assert len(trial_key("dual_encoder", default)) == 16
    assert trial_key("dual_encoder", default) == trial_key("dual_encoder", TrialConfig())


def test_keys_do_not_depend_on_spec_name_or_order(write_spec: Callable[..., Path]) -> None:
    a = plan_of(
        write_spec,
        {
            "name": "a",
            "parameters": {"seed": {"grid": [0, 1]}, "loss.temperature": {"grid": [0.1]}},
        },
    )
    b = plan_of(
        write_spec,
        {
            "name": "b",
            "parameters": {"loss.temperature": {"grid": [0.1]}, "seed": {"grid": [1, 0]}},
        },
    )
    assert {t.key for t in a.trials} == {t.key for t in b.trials}


def test_trial_names() -> None:
    assert trial_name({"loss.temperature": 0.01, "seed": 1}) == "temperature=0.01 seed=1"
    assert trial_name({"a.seed": 1, "b.seed": 2}) == "a.seed=1 b.seed=2"
    assert trial_name({}) == "trial"
    assert trial_name({"loss.temperature": 1 / 30}) == "temperature=0.03333"


def test_flatten() -> None:
    assert flatten(
        {"loss": {"temperature": 0.1}, "seed": 0, "model": {"init": {"seed": None}}}
    ) == {"loss.temperature": 0.1, "seed": 0, "model.init.seed": None}


@pytest.mark.parametrize("path", ["data", "model.init", "model.image.channels"])
def test_sub_config_paths_can_be_swept(write_spec: Callable[..., Path], path: str) -> None:
    values = {
        "data": {"name": "shapes", "n_train": 64},
        "model.init": {"scheme": "xavier"},
        "model.image.channels": [8, 8],
    }
    plan = plan_of(write_spec, {"name": "s", "parameters": {path: {"grid": [values[path]]}}})
    assert len(plan.trials) == 1


def test_shipped_sweeps_keep_the_trial_keys_of_earlier_versions(tmp_path: Path) -> None:
    """A new config field with a default must not change the keys of trials that do not use it,
    or resubmitting a sweep after an upgrade would run every completed trial again. These are
    the keys the temperature sweep's first trials had before modality-pair presets existed
    (the sweep as it was then, trained from scratch, before it gained its pretrain stage)."""
    sweep = tmp_path / "temperature.yaml"
    sweep.write_text(FROM_SCRATCH_TEMPERATURE_SWEEP)
    keys = [t.key for t in expand(load_spec(sweep)).trials[:3]]
    assert keys == ["ecb38c65a62649e1", "5cd32805c745c53d", "807d14db6234dd04"]


def test_every_shipped_sweep_keeps_every_trial_key() -> None:
    """tests/sweep_keys.json holds the key of every trial of every shipped spec that needs no
    files of the user's (--set), in plan order.
    A change that moves one (a renamed field, a new default) would make a resubmitted sweep run
    its completed trials again: it needs `added_field`, or a deliberate update of the file."""
    pinned = json.loads((Path(__file__).with_name("sweep_keys.json")).read_text())
    current = {
        p.name: [t.key for t in expand(load_spec(p)).trials] for p in self_contained_sweeps()
    }
    assert current == pinned


def test_a_preset_is_part_of_the_key_only_when_set(write_spec: Any, tiny_base: Any) -> None:
    plain = expand(load_spec(write_spec({"name": "p", "base": tiny_base})))
    assert "pair" not in plain.trials[0].config.model_dump()
    paired = expand(load_spec(write_spec({"name": "p", "base": {"pair": "vit_bert"}})))
    assert paired.trials[0].config.model_dump()["pair"] == "vit_bert"


FROM_SCRATCH_TEMPERATURE_SWEEP = """\
name: temperature
description: >
  Modality gap versus contrastive temperature: a CNN image tower and a transformer text tower
  trained from scratch on generated shapes with captions at tau = 1/100 ... 1, two seeds each.
trainer: dual_encoder
base:
  data: {name: shapes, n_train: 2048, n_eval: 512}
  model: {embed_dim: 32}
  optim: {lr: 0.001, batch_size: 64, epochs: 10}
  eval: {every_steps: 32}
parameters:
  loss.temperature: {grid: [0.01, 0.02, 0.0333, 0.05, 0.1, 1.0]}
  seed: {grid: [0, 1]}
metric: {name: gap_norm, mode: min}
resources: {cpu: 1}
max_failures: 1
"""
