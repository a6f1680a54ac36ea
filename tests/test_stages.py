"""Staged sweeps: a stage runs first as a sweep of its own, and every trial after it starts from
its best trial; a stage that does not complete stops the sweep; stage mistakes are one line."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import SpecError
from orchestrator.plan import expand
from orchestrator.spec import load_spec
from orchestrator.store.repository import ResultsStore
from tests.conftest import TINY_BASE
from tests.helpers import orchestrator, write_spec


def staged(sweep: str, **stage: Any) -> dict[str, Any]:
    return {
        "name": sweep,
        "base": copy.deepcopy(TINY_BASE),
        "stages": [
            {
                "name": "pre",
                "base": {"loss": {"temperature": 0.05}},
                "parameters": {"seed": {"grid": [0, 1]}},
                "metric": {"name": "loss", "mode": "min"},
                **stage,
            }
        ],
        "parameters": {"loss.temperature": {"grid": [0.01, 1.0]}},
    }


def test_a_stage_is_a_sweep_of_its_own_whose_best_trial_the_rest_start_from(
    write_spec: Callable[..., Path],
) -> None:
    plan = expand(load_spec(write_spec(staged("two"))))
    (stage,) = plan.stages
    assert stage.spec.name == "two.pre" and len(stage.trials) == 2
    assert {t.config.loss.temperature for t in stage.trials} == {0.05}  # type: ignore[attr-defined]
    assert stage.trials[0].config.model.embed_dim == 8  # type: ignore[attr-defined]  # base kept
    for trial in plan.trials:
        source = trial.config.model.init.warm_start  # type: ignore[attr-defined]
        assert (source.sweep, source.trial) == ("two.pre", "best")
    assert all(t.config.model.init.warm_start is None for t in stage.trials)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"base": {"loss": {"temprature": 1}}}, ": stage pre: base.loss.temprature: unknown key"),
        ({"parameters": {"seed": {"grd": [1]}}}, "parameters.seed.grd: unknown key"),
        ({"name": "a b"}, "stages.0.name: 'a b': start with a letter or digit"),
        (
            {"base": {"model": {"init": {"warm_start": {"sweep": "x"}}}}},
            "stages: each stage warm-starts from the one before; remove model.init.warm_start",
        ),
    ],
)
def test_stage_mistakes_are_one_line_each(
    change: dict[str, Any], expected: str, write_spec: Callable[..., Path]
) -> None:
    with pytest.raises(SpecError) as info:
        expand(load_spec(write_spec(staged("bad", **change))))
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_duplicate_stage_names_are_refused(write_spec: Callable[..., Path]) -> None:
    spec = staged("dup")
    spec["stages"].append(dict(spec["stages"][0]))
    result = CliRunner().invoke(app, ["validate", str(write_spec(spec))])
    assert result.exit_code == 2
    assert "stages: names must differ" in result.output


@pytest.mark.slow
def test_submit_runs_the_stage_then_the_trials_from_its_best(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", staged("staged"))
    result = orchestrator("submit", "s.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stage staged.pre" in result.stdout
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        pre = store.trials("staged.pre")
        main = store.trials("staged")
    assert [t.status for t in pre] == ["completed"] * 2
    assert [t.status for t in main] == ["completed"] * 2
    best = min(pre, key=lambda t: t.metrics["loss"])
    assert best.checkpoint_path is not None
    for trial in main:
        assert trial.config["model"]["init"]["checkpoint"] == best.checkpoint_path
    again = orchestrator("submit", "s.yaml", cwd=tmp_path)  # nothing runs twice
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already completed") == 2


@pytest.mark.slow
def test_a_stage_that_fails_stops_the_sweep_before_its_trials(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", staged("stops"))
    result = orchestrator("submit", "s.yaml", cwd=tmp_path, GAPSWEEP_INJECT_FAULT="*@2!")
    assert result.returncode == 1
    assert "stage stops.pre: 2 of 2 trials did not complete" in result.stderr
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        assert store.get_sweep("stops") is None  # its own trials never started
