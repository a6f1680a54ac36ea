"""`orchestrator report` on a tiny real sweep: the HTML page, its figures, and MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from orchestrator.cli.report import report
from orchestrator.report.build import legend_label
from tests.test_end_to_end import orchestrator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_BASE

    workdir = tmp_path_factory.mktemp("report")
    base = {
        **TINY_BASE,
        "data": {**TINY_BASE["data"], "backgrounds": 2},
        "eval": {"every_steps": 2, "shift_lambdas": [-0.5, 0.0, 0.5]},
    }
    spec = {
        "name": "tiny_report",
        "base": base,
        "parameters": {"loss.temperature": {"grid": [0.05, 0.5]}, "seed": {"grid": [0, 1]}},
        "metric": {"name": "gap_norm", "mode": "min"},
    }
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = orchestrator("submit", "spec.yaml", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def invoke(workdir: Path, *args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(report)
    db = f"sqlite:///{workdir / 'results.db'}"
    mlflow = f"sqlite:///{workdir / 'mlflow.db'}"
    result = CliRunner().invoke(
        app, [*args, "--results-db", db, "--mlflow-uri", mlflow], catch_exceptions=False
    )
    return result.exit_code, result.output


def test_report_page_with_figures_and_mlflow_artifacts(sweep_dir: Path) -> None:
    out = sweep_dir / "out"
    code, output = invoke(sweep_dir, "tiny_report", "--out", str(out))
    assert code == 0, output
    page = (out / "index.html").read_text()
    assert "sweep tiny_report" in page and "loss.temperature" in page  # the spec is on the page
    assert page.count("data:image/png;base64,") >= 4
    names = {p.name for p in out.glob("*.png")}
    assert {"gap_norm_vs_setting.png", "shift.png", "modality_map.png"} <= names
    assert "gap_during_training.png" in names

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_report")
    assert experiment is not None
    parent = next(
        r for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    )  # fmt: skip
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/shift.png" in logged


def test_unknown_sweep_and_missing_store(sweep_dir: Path, tmp_path: Path) -> None:
    code, output = invoke(sweep_dir, "nope", "--out", str(tmp_path))
    assert code == 2 and "no sweep named 'nope'" in output
    app = typer.Typer()
    app.command()(report)
    missing = CliRunner().invoke(app, ["x", "--results-db", f"sqlite:///{tmp_path / 'no.db'}"])
    assert missing.exit_code == 2 and "no results store" in missing.output


def test_legend_names_a_swept_data_set_by_its_tag() -> None:
    name = "data={'name': 'shapes', 'n_train': 2048, 'backgrounds': 2} seed=0"
    assert legend_label(name) == "data=shapes seed=0"
    assert legend_label("loss.temperature=0.01 seed=1") == "loss.temperature=0.01 seed=1"
