"""The `orchestrator report` command: parse, call orchestrator.report, print, map errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli_common import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    MlflowUri,
    ResultsDb,
    SweepArg,
    console,
    exit_codes,
    require_store,
)

ReportDir = Annotated[Path, typer.Option("--out", help="folder for index.html and the PNGs")]


def report(
    sweep: SweepArg,
    out: ReportDir = Path("report"),
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    trial: Annotated[
        list[str] | None, typer.Option("--trial", help="trial key to draw a 2-D map of (repeat)")
    ] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="do not log the PNGs to the MLflow parent run")
    ] = False,
) -> None:
    """Write an HTML report with the sweep's figures; log the PNGs to its MLflow parent run."""
    with exit_codes():
        written, logged = write_report(
            sweep, out, results_db, None if no_mlflow else mlflow_uri, trial
        )
    console.print(f"report: {written} ({'figures logged to MLflow' if logged else 'not logged'})")


def write_report(
    sweep: str, out: Path, results_db: str, mlflow_uri: str | None, trials: list[str] | None
) -> tuple[Path, bool]:
    """Build the report of a stored sweep; returns the page and whether MLflow got the PNGs."""
    from orchestrator.report import build_report, log_to_mlflow
    from orchestrator.store.repository import ResultsStore

    require_store(results_db)
    store = ResultsStore(results_db)
    try:
        built = build_report(store, sweep, out, trials)
        view = store.get_sweep(sweep)
    finally:
        store.close()
    logged = (
        view is not None and mlflow_uri is not None and log_to_mlflow(mlflow_uri, view, built.pngs)
    )
    return built.page, logged
