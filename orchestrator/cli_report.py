"""The `orchestrator report` command: parse, call orchestrator.report, print, map errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import GapsweepError, InputError

console = Console()
err_console = Console(stderr=True)


def report(
    sweep: Annotated[str, typer.Argument(help="sweep name", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="folder for index.html and the PNGs")] = Path(
        "report"
    ),
    results_db: Annotated[
        str,
        typer.Option(
            "--results-db", envvar="ORCHESTRATOR_RESULTS_DB", help="SQLAlchemy URL of the store"
        ),
    ] = "sqlite:///results.db",
    mlflow_uri: Annotated[
        str, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI")
    ] = "sqlite:///mlflow.db",
    trial: Annotated[
        list[str] | None, typer.Option("--trial", help="trial key to draw a 2-D map of (repeat)")
    ] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="do not log the PNGs to the MLflow parent run")
    ] = False,
) -> None:
    """Write an HTML report with the sweep's figures; log the PNGs to its MLflow parent run."""
    try:
        written, logged = _write(sweep, out, results_db, None if no_mlflow else mlflow_uri, trial)
    except InputError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except GapsweepError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"report: {written} ({'figures logged to MLflow' if logged else 'not logged'})")


def _write(
    sweep: str, out: Path, results_db: str, mlflow_uri: str | None, trials: list[str] | None
) -> tuple[Path, bool]:
    from orchestrator.report import build_report, log_to_mlflow
    from orchestrator.store.repository import ResultsStore

    prefix = "sqlite:///"
    if results_db.startswith(prefix) and not Path(results_db[len(prefix) :]).exists():
        raise InputError(f"no results store at {results_db}; submit a sweep first")
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
