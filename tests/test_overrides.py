"""`--set path=value`: base settings overridden on the command line, validated like the spec,
part of every trial's key, and stored with the sweep so that `resume` applies them again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.overrides import parse_overrides
from orchestrator.plan import expand
from orchestrator.spec import load_spec
from orchestrator.store.repository import ResultsStore
from tests.helpers import orchestrator


def problems(result: Any) -> list[str]:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_values_are_yaml_and_malformed_items_are_one_line_each() -> None:
    parsed = parse_overrides(["loss.temperature=0.1", "model.image.channels=[8, 16]", "x.y=a b"])
    assert parsed == {"loss.temperature": 0.1, "model.image.channels": [8, 16], "x.y": "a b"}
    with pytest.raises(Exception) as caught:
        parse_overrides(["no_equals", "loss.temperature=[1, 2", ".bad=1"])
    assert len(caught.value.problems) == 3  # type: ignore[attr-defined]


def test_overrides_are_validated_like_the_spec(write_spec: Callable[..., Path]) -> None:
    spec = write_spec({"name": "o", "parameters": {"seed": {"grid": [0, 1]}}})
    sets = ["--set", "loss.temprature=0.2", "--set", "seed=3", "--set", "optim.lr=-1"]
    lines = problems(orchestrator("validate", str(spec), *sets, cwd=spec.parent))
    assert len(lines) == 3
    assert (
        "--set loss.temprature: unknown setting of trainer dual_encoder; did you mean" in lines[0]
    )
    assert "--set seed: the spec sweeps it (parameters.seed)" in lines[1]
    assert "base.optim.lr: Input should be greater than 0" in lines[2]


def test_an_override_is_part_of_the_trial_keys_as_if_written_in_the_spec(
    write_spec: Callable[..., Path], tiny_base: dict[str, Any]
) -> None:
    parameters = {"seed": {"grid": [0, 1]}}
    plain = write_spec({"name": "k", "base": tiny_base, "parameters": parameters}, name="a.yaml")
    tiny_base["loss"] = {"temperature": 0.3}
    written = write_spec({"name": "k", "base": tiny_base, "parameters": parameters}, "b.yaml")
    overridden = expand(load_spec(plain, {"loss.temperature": 0.3}))
    assert [t.key for t in overridden.trials] == [t.key for t in expand(load_spec(written)).trials]
    assert [t.key for t in overridden.trials] != [t.key for t in expand(load_spec(plain)).trials]


@pytest.mark.slow
def test_a_sweep_keeps_its_overrides_and_resume_applies_them(
    write_spec: Callable[..., Path],
) -> None:
    spec = write_spec(
        {
            "name": "kept",
            "trainer": "landscape",
            "parameters": {"temperature": {"grid": [0.01, 1.0]}},
            "metric": {"name": "min_loss_gap", "mode": "max"},
        }
    )
    folder, setting = spec.parent, ["--set", "shifts=7", "--set", "layout=rings"]
    submitted = orchestrator("submit", str(spec), *setting, cwd=folder)
    assert submitted.returncode == 0, submitted.stderr
    with ResultsStore(f"sqlite:///{folder / 'results.db'}") as store:
        assert store.stored_spec("kept")[1] == {"shifts": 7, "layout": "rings"}
        trials = store.trials("kept")
    assert [t.config["shifts"] for t in trials] == [7, 7] and trials[0].last_step == 6
    assert "completed" in orchestrator("plan", str(spec), *setting, cwd=folder).stdout
    assert "completed" not in orchestrator("plan", str(spec), cwd=folder).stdout
    resumed = orchestrator("resume", "kept", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 2 trials already completed" in resumed.stdout
    with ResultsStore(f"sqlite:///{folder / 'results.db'}") as store:
        assert [t.attempts for t in store.trials("kept")] == [1, 1]
