"""The `orchestrator report` command (the library: orchestrator/report/build.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    MlflowUri,
    ResultsDb,
    SweepArg,
    Version,
    console,
    err_console,
    exit_codes,
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
    version: Version = None,
) -> None:
    """Write an HTML report with the sweep's figures; log the PNGs to its MLflow parent run."""
    from orchestrator.report.build import write_report

    with exit_codes():
        written, logged = write_report(
            sweep, out, results_db, None if no_mlflow else mlflow_uri, trial, _note, version
        )
    console.print(f"report: {written} ({'figures logged to MLflow' if logged else 'not logged'})")


def _note(line: str) -> None:
    err_console.print(f"note: {line}", highlight=False, soft_wrap=True)
