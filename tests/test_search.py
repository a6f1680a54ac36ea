"""Issue 18: adaptive search through `orchestrator submit` on a real local Ray, MLflow in a
SQLite file and a SQLite results store: Optuna's TPE, NSGA-II and random samplers with the
budget kept and no key run twice; ASHA and the median rule pruning trials, which keep their
series and are neither completed nor failed; a study whose driver was SIGKILLed going on
where it stopped. The Pareto front is checked against a brute-force pass over the trials."""

from __future__ import annotations

import copy
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_BASE
from tests.helpers import (
    kill_session,
    mlflow_runs,
    orchestrator,
    start_orchestrator,
    stored,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow

# 64 steps a trial, a report every 8: long enough for a scheduler to cut trials at 16 and 32.
SHAPE = {"data": {"n_train": 256}, "optim": {"epochs": 4}, "eval": {"every_steps": 8}}
TOTAL_STEPS = 64


def base(**sections: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(TINY_BASE)
    for section, values in {**SHAPE, **sections}.items():
        merged[section] = {**merged.get(section, {}), **values}
    return merged


def study(name: str, sampler: str, budget: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base": base(),
        "search": "optuna",
        "sampler": sampler,
        "num_samples": budget,
        "seed": 3,
        "parameters": {
            "loss.temperature": {"loguniform": [0.01, 1.0]},
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
        },
        "metric": {"name": "gap_norm", "mode": "min"},
        **extra,
    }


def results(workdir: Path, sweep: str, *args: str) -> list[dict[str, Any]]:
    listed = orchestrator("results", sweep, "--format", "json", *args, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def assert_once_each(workdir: Path, sweep: str, count: int) -> None:
    """`count` trials, every key once in SQL and once (one child run) in MLflow."""
    trials = stored(workdir, sweep)
    assert len(trials) == count and len({t.key for t in trials}) == count
    _, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", sweep)
    keys = Counter(r.data.tags.get("gapsweep.trial_key") for r in runs)
    keys.pop(None, None)  # the parent run
    assert keys == Counter({t.key: 1 for t in trials})


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_an_optuna_study_spends_its_budget_once_per_key(tmp_path: Path, sampler: str) -> None:
    write_spec(tmp_path / "s.yaml", study("s", sampler, 5))
    first = orchestrator("submit", "s.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"an Optuna study ({sampler}) of 5 trials" in first.stdout
    assert {r["status"] for r in results(tmp_path, "s")} == {"completed"}
    assert_once_each(tmp_path, "s", 5)

    again = orchestrator("submit", "s.yaml", cwd=tmp_path)  # the budget is spent
    assert again.returncode == 0 and "draws 0 more of its budget of 5" in again.stdout
    assert [t.attempts for t in stored(tmp_path, "s")] == [1] * 5


def test_nsga_ii_finds_a_pareto_front_that_brute_force_agrees_with(tmp_path: Path) -> None:
    objectives = [{"name": "zero_shot_acc", "mode": "max"}, {"name": "gap_norm", "mode": "min"}]
    spec = study("front", "nsgaii", 8, metric=objectives, constraints=["gap_norm <= 2.0"])
    write_spec(tmp_path / "front.yaml", spec)
    done = orchestrator("submit", "front.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_once_each(tmp_path, "front", 8)
    rows = [r["metrics"] for r in results(tmp_path, "front") if r["status"] == "completed"]
    keys = [r["key"] for r in results(tmp_path, "front") if r["status"] == "completed"]

    def beaten(a: dict[str, Any]) -> bool:
        return any(
            b["zero_shot_acc"] >= a["zero_shot_acc"]
            and b["gap_norm"] <= a["gap_norm"]
            and (b["zero_shot_acc"], b["gap_norm"]) != (a["zero_shot_acc"], a["gap_norm"])
            for b in rows
        )

    expected = {key for key, r in zip(keys, rows, strict=True) if not beaten(r)}
    front = {r["key"] for r in results(tmp_path, "front", "--pareto")}
    assert front == expected and front
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "front")
    best = {r.data.tags["gapsweep.trial_key"] for r in runs if r.data.tags.get("gapsweep.best")}
    assert best == expected
    report = orchestrator("report", "front", "--out", "report", "--no-mlflow", cwd=tmp_path)
    assert report.returncode == 0 and (tmp_path / "report" / "pareto.png").is_file()


@pytest.mark.parametrize("kind", ["asha", "median"])
def test_a_scheduler_prunes_lagging_trials_which_keep_their_series(
    tmp_path: Path, kind: str
) -> None:
    scheduler: dict[str, Any] = {"kind": kind, "grace_steps": 16}
    if kind == "asha":
        scheduler["reduction_factor"] = 2
    spec = {
        "name": "cut",
        "base": base(),
        "parameters": {
            "loss.temperature": {"grid": [0.01, 0.03, 0.1, 0.3, 1.0]},
            "seed": {"grid": [0, 1]},
        },
        "metric": {"name": "gap_norm", "mode": "min"},
        "scheduler": scheduler,
        "max_concurrent_trials": 2,
    }
    write_spec(tmp_path / "cut.yaml", spec)
    done = orchestrator("submit", "cut.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored(tmp_path, "cut")
    statuses = Counter(t.status for t in trials)
    assert statuses["pruned"] >= 1 and statuses["completed"] >= 1, statuses
    assert set(statuses) <= {"pruned", "completed"}
    for t in trials:
        assert (t.last_step == TOTAL_STEPS) == (t.status == "completed"), (t.status, t.last_step)
        assert t.metrics  # a pruned trial keeps its last metrics
    series = orchestrator("series", "cut", "gap_norm", "--format", "json", cwd=tmp_path)
    steps = Counter(row["key"] for row in json.loads(series.stdout))
    pruned = [t for t in trials if t.status == "pruned"]
    assert all(steps[t.key] >= 2 for t in pruned)  # step 0 and the rung it was cut at
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "cut")
    tagged = {r.data.tags["gapsweep.trial_key"] for r in runs if r.data.tags.get("gapsweep.pruned")}
    assert tagged == {t.key for t in pruned}
    compare = orchestrator("compare", "cut", "--by", "loss.temperature", "--format", "json",
                           cwd=tmp_path)  # fmt: skip
    assert sum(g["n"] for g in json.loads(compare.stdout)) == statuses["completed"]
    again = orchestrator("submit", "cut.yaml", cwd=tmp_path)  # pruned trials are not rerun
    assert again.returncode == 0
    assert [t.attempts for t in stored(tmp_path, "cut")] == [t.attempts for t in trials]


def test_a_study_whose_driver_was_killed_goes_on_where_it_stopped(tmp_path: Path) -> None:
    spec = study("killed", "tpe", 6, max_concurrent_trials=1)
    write_spec(tmp_path / "killed.yaml", spec)
    driver = start_orchestrator("submit", "killed.yaml", cwd=tmp_path)
    try:
        done = lambda: sum(t.status == "completed" for t in stored(tmp_path, "killed"))  # noqa: E731
        wait_for(lambda: done() >= 2, 300, "two completed trials")
    finally:
        kill_session(os.getsid(driver.pid), signal.SIGKILL)
        driver.wait(timeout=60)
    before = {t.key: t for t in stored(tmp_path, "killed")}
    finished = {k for k, t in before.items() if t.status == "completed"}
    again = orchestrator("submit", "killed.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {t.key: t for t in stored(tmp_path, "killed")}
    assert len(after) == 6 and {t.status for t in after.values()} == {"completed"}
    assert all(after[k].attempts == 1 for k in finished)  # not run again
    assert set(before) <= set(after)  # the interrupted one ran on, under its own key
    assert_once_each(tmp_path, "killed", 6)
