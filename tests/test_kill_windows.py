"""A driver killed in the windows between two writes, for real (local Ray, MLflow SQLite store,
SQLite results store): the next driver (submit again, resume, `orchestrator sync`) leaves one
MLflow run per trial, closed with the trial's status, and the trial's final metrics recorded once.

`GAPSWEEP_KILL_DRIVER_AT=POINT` makes the driver SIGKILL itself at that point
(orchestrator/tracking/client.py:kill_point)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store.views import TrialView
from tests.helpers import (
    kill_session,
    mlflow_runs,
    orchestrator,
    sql_steps,
    start_orchestrator,
    stored,
    sweep_spec,
    write_spec,
)

pytestmark = pytest.mark.slow

TWO_EPOCHS = {"optim": {"epochs": 2}}
STEPS = [0, 2, 4, 6, 8]  # two epochs of 4 steps, reported every 2


def killed_at(point: str, workdir: Path) -> None:
    """Submit s.yaml with the driver set to kill itself at `point`; wait for it to die."""
    driver = start_orchestrator("submit", "s.yaml", cwd=workdir, GAPSWEEP_KILL_DRIVER_AT=point)
    try:
        _, stderr = driver.communicate(timeout=600)
    finally:
        kill_session(driver.pid)  # what it started (Ray) outlives it
    assert driver.returncode == -9, stderr


def runs(workdir: Path, sweep: str) -> tuple[Any, list[Any], list[Any]]:
    """The MLflow client, the sweep's parent runs and its child runs."""
    client, found = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", sweep)
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, [r for r in found if r not in children], children


def assert_one_finished_run_per_trial(workdir: Path, sweep: str) -> list[TrialView]:
    """One parent, one child per trial (the one the store names), FINISHED, every step once."""
    trials = stored(workdir, sweep)
    client, parents, children = runs(workdir, sweep)
    assert len(parents) == 1
    assert sorted(r.info.run_id for r in children) == sorted(str(t.mlflow_run_id) for t in trials)
    for t in trials:
        assert t.status == "completed" and t.metrics, t.name
        assert sql_steps(workdir, sweep, t.key) == STEPS, t.name
        history = client.get_metric_history(t.mlflow_run_id, "gap_norm")
        assert sorted(m.step for m in history) == STEPS, t.name
        assert client.get_run(t.mlflow_run_id).info.status == "FINISHED", t.name
    return trials


@pytest.mark.parametrize("point", ["sweep-run-created", "trial-run-created"])
def test_a_run_whose_id_never_reached_the_store_is_adopted(tmp_path: Path, point: str) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("orphan", seeds=2, base=TWO_EPOCHS))
    killed_at(point, tmp_path)
    _, parents, children = runs(tmp_path, "orphan")
    orphans = parents if point == "sweep-run-created" else children
    assert len(orphans) == 1  # made in MLflow, its id nowhere in the store
    assert {t.mlflow_run_id for t in stored(tmp_path, "orphan")} == {None}
    result = orchestrator("submit", "s.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_one_finished_run_per_trial(tmp_path, "orphan")
    _, parents, children = runs(tmp_path, "orphan")
    assert orphans[0].info.run_id in {r.info.run_id for r in parents + children}


def copy_stores(source: Path, target: Path) -> None:
    """The two SQLite stores as the killed driver left them (WAL included), in a new folder."""
    target.mkdir()
    for name in ("results.db", "mlflow.db", "s.yaml"):
        if name.endswith(".db"):
            with sqlite3.connect(source / name) as src, sqlite3.connect(target / name) as dst:
                src.backup(dst)
        else:
            (target / name).write_text((source / name).read_text())


def test_a_run_left_running_is_closed_by_sync_and_by_submitting_again(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("left", seeds=1, base=TWO_EPOCHS))
    killed_at("trial-closing", tmp_path)  # the store has the trial completed; MLflow not yet
    (trial,) = stored(tmp_path, "left")
    client, _, _ = runs(tmp_path, "left")
    assert trial.status == "completed"
    assert client.get_run(trial.mlflow_run_id).info.status == "RUNNING"
    again = tmp_path / "again"
    copy_stores(tmp_path, again)
    synced = orchestrator("sync", "left", cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert_one_finished_run_per_trial(tmp_path, "left")
    result = orchestrator("submit", "s.yaml", cwd=again)
    assert result.returncode == 0, result.stderr
    assert "1 of 1 trials already completed" in result.stdout + result.stderr
    assert_one_finished_run_per_trial(again, "left")


def test_a_trial_killed_after_its_last_checkpoint_ends_with_its_final_metrics(
    tmp_path: Path,
) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("last", seeds=1, base=TWO_EPOCHS))
    first = orchestrator("submit", "s.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (done,) = stored(tmp_path, "last")
    assert done.metrics and done.checkpoint_path is not None
    # What a driver killed after recording the final report and its checkpoint, before the
    # trial's end, leaves: the trial running without final metrics, its run RUNNING.
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute(
            "UPDATE trials SET status = 'running', final_metrics = NULL, ended_at = NULL "
            "WHERE key = ?",
            (done.key,),
        )
    client, _, _ = runs(tmp_path, "last")
    client.update_run(done.mlflow_run_id, "RUNNING")
    result = orchestrator("submit", "s.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (trial,) = assert_one_finished_run_per_trial(tmp_path, "last")
    assert (trial.attempts, trial.resumed_from_step) == (2, 8)
    assert trial.metrics == done.metrics  # the last report, recorded once more in place
