"""`orchestrator submit` end to end, as a user runs it: a real local Ray, a real MLflow SQLite
store and a real SQLite results store, in a fresh working directory."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from tests.helpers import mlflow_runs, stored
from tests.helpers import orchestrator as orchestrator  # test_report and test_warm_start use it

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from tests.conftest import TINY_BASE

    workdir = tmp_path_factory.mktemp("e2e")
    spec = {
        "name": "tiny",
        "base": TINY_BASE,
        "parameters": {"loss.temperature": {"grid": [0.05, 0.5]}, "seed": {"grid": [0, 1]}},
        "metric": {"name": "gap_norm", "mode": "min"},
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(spec))
    result = orchestrator("submit", "tiny.yaml", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, result.stdout


def test_submit_prints_live_and_summary_tables(finished_sweep: tuple[Path, str]) -> None:
    _, out = finished_sweep
    assert "sweep tiny: 4 trials" in out
    assert "summary of tiny, best gap_norm first" in out
    assert "temperature" in out and "zero_shot_acc" in out
    assert "Traceback" not in out
    # Ray Tune's own console output would break into the live table.
    assert "Configuration for experiment" not in out and "TensorBoard" not in out


def test_mlflow_has_one_parent_and_a_nested_child_per_trial(
    finished_sweep: tuple[Path, str],
) -> None:
    workdir, out = finished_sweep
    client, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", "tiny")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.run_name == "tiny" and parent.info.status == "FINISHED"
    # The printed link opens this experiment's runs table, not MLflow 3's GenAI overview.
    page = f"#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
    assert f"runs: mlflow ui, then http://127.0.0.1:5000/{page}" in " ".join(out.split())
    assert parent.data.metrics["trials_completed"] == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.info.run_name for c in children) == [
        f"temperature={t} seed={s}" for t in ("0.05", "0.5") for s in (0, 1)
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        tags = child.data.tags
        assert tags["gapsweep.sweep"] == "tiny" and len(tags["gapsweep.trial_key"]) == 16
        assert tags["gapsweep.seed"] in ("0", "1") and tags["gapsweep.host"]
        assert tags["gapsweep.git_commit"] and tags["gapsweep.version.torch"]
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {
            "config.yaml",
            "metrics.json",
            "embeddings_sample.npz",
            "modalities_2d.png",
        } <= files
        params = child.data.params
        assert params["loss.temperature"] in ("0.05", "0.5")
        assert params["data.n_train"] == "64" and params["model.init.scheme"] == "default"
        history = client.get_metric_history(child.info.run_id, "gap_norm")
        assert sorted(m.step for m in history) == [0, 2, 4]
        assert all(math.isfinite(m.value) for m in history)
        for name in ("loss", "zero_shot_acc", "recall_at_1_a2b", "cone_cosine_a", "temperature"):
            assert math.isfinite(child.data.metrics[name])
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "spec.yaml" in artifacts


def test_each_trials_pictures_were_drawn_by_its_worker(finished_sweep: tuple[Path, str]) -> None:
    """The driver only uploads them: they are in each trial's final checkpoint."""
    workdir, _ = finished_sweep
    for trial in stored(workdir, "tiny"):
        assert trial.checkpoint_path is not None
        drawn = {p.name for p in (Path(trial.checkpoint_path) / "artifacts").iterdir()}
        assert {"embeddings_sample.npz", "modalities_2d.png"} <= drawn


def test_results_json_lists_every_trial(finished_sweep: tuple[Path, str]) -> None:
    workdir, _ = finished_sweep
    result = orchestrator("results", "tiny", "--format", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 4
    for record in records:
        assert record["status"] == "completed"
        assert record["attempts"] == 1
        assert len(record["key"]) == 16
        assert record["params"]["loss.temperature"] in (0.05, 0.5)
        assert record["params"]["data.n_train"] == 64
        assert math.isfinite(record["metrics"]["gap_norm"])
        assert record["host"] and record["node"]
    # Final metrics are the last reported values: equal to MLflow's latest.
    _, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", "tiny")
    by_run = {r.info.run_id: r.data.metrics for r in runs}
    for record in records:
        assert by_run[record["mlflow_run_id"]]["gap_norm"] == pytest.approx(
            record["metrics"]["gap_norm"]
        )


def test_results_csv_and_table(finished_sweep: tuple[Path, str]) -> None:
    workdir, _ = finished_sweep
    rows = list(
        csv.DictReader(
            io.StringIO(orchestrator("results", "tiny", "--format", "csv", cwd=workdir).stdout)
        )
    )
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert {"loss.temperature", "gap_norm"} <= rows[0].keys()
    table = orchestrator("results", "tiny", cwd=workdir)
    assert table.returncode == 0 and "gap_norm" in table.stdout


def test_resubmitting_runs_nothing_again_and_duplicates_nothing(
    finished_sweep: tuple[Path, str],
) -> None:
    workdir, _ = finished_sweep
    result = orchestrator("submit", "tiny.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "4 of 4 trials already completed" in result.stdout
    _, runs = mlflow_runs(f"sqlite:///{workdir / 'mlflow.db'}", "tiny")
    assert len(runs) == 5
    records = json.loads(orchestrator("results", "tiny", "--format", "json", cwd=workdir).stdout)
    assert [r["attempts"] for r in records] == [1, 1, 1, 1]
    plan = orchestrator("plan", "tiny.yaml", cwd=workdir)
    assert plan.stdout.count("completed") == 4


def test_sweeps_status_and_compare(finished_sweep: tuple[Path, str]) -> None:
    workdir, _ = finished_sweep
    sweeps = orchestrator("sweeps", cwd=workdir)
    assert sweeps.returncode == 0 and "tiny" in sweeps.stdout
    status = orchestrator("status", "tiny", cwd=workdir)
    assert status.returncode == 0 and status.stdout.count("completed") == 4
    result = orchestrator(
        "compare", "tiny", "--by", "loss.temperature", "--plot", "gap.png", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(orchestrator("results", "tiny", "--format", "json", cwd=workdir).stdout)
    low = [r["metrics"]["gap_norm"] for r in records if r["params"]["loss.temperature"] == 0.05]
    mean = sum(low) / 2
    assert f"{mean:.4f}" in result.stdout  # the group's mean over its two seeds
    assert (workdir / "gap.png").stat().st_size > 1000
    bad = orchestrator("compare", "tiny", "--by", "loss.temprature", cwd=workdir)
    assert bad.returncode == 2 and "not a setting" in bad.stderr


def test_unknown_sweep_exit_code_2(finished_sweep: tuple[Path, str]) -> None:
    workdir, _ = finished_sweep
    result = orchestrator("results", "nope", cwd=workdir)
    assert result.returncode == 2
    assert "no sweep named 'nope'" in result.stderr
