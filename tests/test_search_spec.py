"""Issue 18's spec keys validated like the rest: one line per problem, with hints, through the
CLI's `validate` (exit 2), and what a valid adaptive spec plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import check_trial_count, expand
from orchestrator.search_spec import parse_constraint
from orchestrator.spec import load_spec
from tests.conftest import TINY_BASE
from tests.helpers import orchestrator, write_spec

DRAWN = {"loss.temperature": {"loguniform": [0.01, 1.0]}}


def spec(**keys: Any) -> dict[str, Any]:
    return {"name": "s", "base": TINY_BASE, "parameters": DRAWN, **keys}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"sampler": "tpe"}, "sampler: only with search: optuna"),
        ({"search": "optuna", "sampler": "annealing"}, "sampler: Input should be"),
        (
            {"search": "optuna", "parameters": {"seed": {"grid": [0, 1]}}},
            "parameters.seed: grid is only for search: grid",
        ),
        (
            {"metric": [{"name": "gap_norm"}, {"name": "loss"}]},
            "metric: several objectives need search: optuna",
        ),
        (
            {
                "search": "optuna",
                "sampler": "cmaes",
                "metric": [{"name": "gap_norm"}, {"name": "loss"}],
            },
            "sampler: cmaes optimises one objective",
        ),
        (
            {"search": "optuna", "metric": [{"name": "gap_norm"}, {"name": "gap_norm"}]},
            "give one to four different objectives",
        ),
        (
            {"search": "optuna", "sampler": "random", "constraints": ["gap_norm <= 0.3"]},
            "constraints: only with search: optuna and sampler tpe or nsgaii",
        ),
        ({"search": "optuna", "constraints": ["gap_norm < 0.3"]}, "'metric <= number'"),
        ({"search": "optuna", "constraints": ["gap_nrom <= 0.3"]}, "did you mean 'gap_norm'"),
        ({"scheduler": {"kind": "asha", "grace": 8}}, "did you mean 'grace_steps'"),
        ({"scheduler": {"kind": "median", "reduction_factor": 2}}, "not used by the median rule"),
        ({"scheduler": {"kind": "asha", "reduction_factor": 1}}, "greater than 1"),
        ({"scheduler": {"kind": "hyperband", "grace_steps": 8}}, "hyperband sizes its own"),
        ({"search": "optuna", "parameters": {"optim.lr": {"uniform": [-1, 1]}}}, "optim.lr"),
        (
            {"search": "optuna", "pack": "auto"},
            "pack: search: optuna draws trials one by one; packs run with search grid or random",
        ),
        (
            {"search": "random", "scheduler": {"kind": "asha"}, "pack": 4},
            "pack: a scheduler stops trials one by one",
        ),
        ({"search": "random", "pack": 0}, "pack: give auto or a number of members from 1 to 256"),
    ],
)
def test_bad_search_keys_get_one_line_each_and_exit_2(
    tmp_path: Path, keys: dict[str, Any], message: str
) -> None:
    path = write_spec(tmp_path / "s.yaml", spec(**keys))
    checked = orchestrator("validate", path.name, cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout
    assert message in checked.stderr and "Traceback" not in checked.stderr, checked.stderr


def test_a_study_plans_its_budget_not_its_trials(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.yaml", spec(search="optuna", num_samples=40))
    loaded = load_spec(path)
    check_trial_count(loaded, yes=False)  # 40: the budget, under the --yes limit
    assert expand(loaded).trials == []  # drawn as the study runs
    objectives = spec(search="optuna", metric=[{"name": "zero_shot_acc", "mode": "max"},
                                               {"name": "gap_norm"}])  # fmt: skip
    two = load_spec(write_spec(tmp_path / "two.yaml", objectives)).spec
    assert [m.name for m in two.objectives] == ["zero_shot_acc", "gap_norm"]
    assert two.primary.name == "zero_shot_acc"


def test_a_constraint_is_optunas_violation() -> None:
    at_most = parse_constraint("gap_norm <= 0.3")
    assert at_most.violation(0.25) == pytest.approx(-0.05) and at_most.violation(0.5) > 0
    at_least = parse_constraint("zero_shot_acc >= 0.9")
    assert at_least.violation(0.95) < 0 and at_least.violation(0.5) == pytest.approx(0.4)
