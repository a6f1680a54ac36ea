"""Spec loading and validation: good specs pass; a bad spec gets one line per problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import SpecError
from orchestrator.plan import expand
from orchestrator.spec import load_spec
from tests.helpers import self_contained_sweeps

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        expand(load_spec(path))
    return info.value.problems


@pytest.mark.parametrize("spec_file", self_contained_sweeps(), ids=lambda p: p.name)
def test_shipped_specs_validate(spec_file: Path) -> None:
    plan = expand(load_spec(spec_file))
    assert plan.trials or plan.spec.search == "optuna"  # a study draws its trials as it runs
    assert len({t.key for t in plan.trials}) == len(plan.trials)


def test_temperature_spec_is_the_papers_grid() -> None:
    plan = expand(load_spec(SWEEPS / "temperature.yaml"))
    temps = sorted({t.config.model_dump()["loss"]["temperature"] for t in plan.trials})
    assert temps == pytest.approx([1 / 100, 1 / 50, 1 / 30, 1 / 20, 1 / 10, 1.0], rel=1e-2)
    assert len(plan.trials) == 18  # six temperatures, three fine-tuning seeds


def test_minimal_spec_uses_defaults(write_spec: Callable[..., Path]) -> None:
    loaded = load_spec(write_spec({"name": "one"}))
    plan = expand(loaded)
    assert len(plan.trials) == 1
    assert loaded.spec.metric.name == "loss" and loaded.spec.resources.cpu == 1


def test_every_problem_is_reported_on_its_own_line(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        {
            "name": "bad name!",
            "paramaters": {},
            "base": {"loss": {"temperature": -1, "foo": 2}},
            "parameters": {
                "loss.temprature": {"grid": [0.1]},
                "seed": {"grd": [1]},
                "optim.lr": {"uniform": [1, 0]},
            },
            "metric": {"name": "gap", "mode": "min"},
        }
    )
    problems = problems_of(path)
    expected = [
        "name: 'bad name!': start with a letter or digit and use only letters",
        "paramaters: unknown key; did you mean 'parameters'?",
        "base.loss.temperature: Input should be greater than 0",
        "base.loss.foo: unknown key",
        "parameters.loss.temprature: unknown parameter path; did you mean 'loss.temperature'?",
        "parameters.seed.grd: unknown key; did you mean 'grid'?",
        "parameters.optim.lr: uniform needs low < high",
        "metric.name: unknown metric 'gap'",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert all(p.startswith(f"{path}: ") for p in problems)
    assert all("\n" not in p for p in problems)


def test_invalid_swept_values_name_the_parameter(write_spec: Callable[..., Path]) -> None:
    path = write_spec({"name": "x", "parameters": {"loss.temperature": {"grid": [0.1, 0, -2]}}})
    problems = problems_of(path)
    assert problems == [
        f"{path}: parameters.loss.temperature: value 0: Input should be greater than 0",
        f"{path}: parameters.loss.temperature: value -2: Input should be greater than 0",
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("name: x\nname: y\n", "duplicate key 'name'"),
        ("name: [x\n", "invalid YAML: line 2"),
        ("", "got an empty file"),
        ("- a\n- b\n", "got a list"),
        (b"name: \xff\xfe\n", "not UTF-8"),
        ("name: x\n!!python/object:os.system {}\n", "invalid YAML"),
        ("name: x\nparameters: {seed: {grid: []}}\n", "parameters.seed.grid"),
        ("name: x\nsearch: random\nparameters: {seed: {grid: [1]}}\n", "use choice"),
        ("name: x\nnum_samples: 3\nparameters: {seed: {grid: [1]}}\n", "num_samples"),
        ("name: x\nparameters: {seed: {grid: [1], choice: [2]}}\n", "exactly one of"),
        ("name: x\nparameters: {optim.lr: {loguniform: [0, 1]}}\n", "loguniform needs low > 0"),
        ("name: x\nresources: {cpu: 0}\n", "resources.cpu"),
        ("name: x\ntrainer: nope\n", "unknown trainer 'nope'"),
        ("name: x\nbase: {model: {text: {hidden_size: 10, num_heads: 3}}}\n", "divisible"),
    ],
)
def test_malformed_specs(
    write_spec: Callable[..., Path], content: str | bytes, fragment: str
) -> None:
    problems = problems_of(write_spec(content))
    assert any(fragment in p for p in problems), problems


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such file" in problems_of(tmp_path / "nope.yaml")[0]
    assert "is a directory" in problems_of(tmp_path)[0]


def test_cli_bad_spec_exit_code_2_without_traceback(write_spec: Callable[..., Path]) -> None:
    path = write_spec({"name": "x", "parameters": {"loss.temprature": {"grid": [1]}}})
    for command in ("validate", "plan", "submit"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert "did you mean 'loss.temperature'" in result.output
        assert "Traceback" not in result.output


def test_cli_submit_bad_spec_starts_nothing(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_spec("name: x\nbase: {loss: {temperature: 0}}\n")
    result = CliRunner().invoke(app, ["submit", str(path)])
    assert result.exit_code == 2
    assert not any((tmp_path / name).exists() for name in ("results.db", "mlflow.db", "runs"))


def test_cli_validate_ok(tiny_base: dict[str, Any], write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        {"name": "ok", "base": tiny_base, "parameters": {"seed": {"grid": [0, 1, 2]}}}
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0
    assert "3 trials" in result.output


def test_a_huge_sweep_asks_for_yes(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    from tests.helpers import orchestrator

    path = write_spec({"name": "big", "parameters": {"seed": {"grid": [0, 1, 2, 3]}}})
    result = orchestrator("submit", str(path), cwd=tmp_path, GAPSWEEP_MAX_TRIALS="3")
    assert result.returncode == 2
    assert "expands to 4 trials, more than 3 (GAPSWEEP_MAX_TRIALS); pass --yes" in result.stderr
    assert not (tmp_path / "runs").exists()
