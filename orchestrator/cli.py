"""The `orchestrator` command line: parse, call, print, and map errors to exit codes.

Exit codes: 0 success; 1 the work ran but something failed (a trial, a service); 2 bad input.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.errors import GapsweepError, InputError
from orchestrator.plan import expand, flatten, format_value
from orchestrator.spec import load_spec

app = typer.Typer(
    help="gapsweep: sweeps of contrastive dual encoders for modality-gap research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="sweep spec YAML file", show_default=False)]
ResultsDb = Annotated[
    str,
    typer.Option(
        "--results-db", envvar="ORCHESTRATOR_RESULTS_DB", help="SQLAlchemy URL of the results store"
    ),
]
MlflowUri = Annotated[
    str, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI")
]
Address = Annotated[
    str | None,
    typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster address; local Ray if unset"),
]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn the project's errors into one line per problem and an exit code, never a traceback."""
    from trainers.errors import TrainerError

    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except TrainerError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except GapsweepError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec and every trial it expands to, without running anything."""
    with exit_codes():
        loaded = load_spec(spec)
        plan = expand(loaded)
    console.print(f"{spec}: valid, sweep {plan.spec.name!r} with {len(plan.trials)} trials")


@app.command()
def plan(spec: SpecArg, results_db: ResultsDb = "sqlite:///results.db") -> None:
    """Print the trials a spec expands to, and which are already completed."""
    with exit_codes():
        the_plan = expand(load_spec(spec))
        statuses = _stored_statuses(results_db, the_plan.spec.name)
    table = Table(
        title=f"sweep {the_plan.spec.name}: {len(the_plan.trials)} trials", title_justify="left"
    )
    for column in ("#", "key", "trial", "stored status", "will run"):
        table.add_column(column)
    for t in the_plan.trials:
        stored = statuses.get(t.key, "new")
        table.add_row(str(t.index), t.key, t.name, stored, "no" if stored == "completed" else "yes")
    console.print(table)
    if the_plan.duplicates_dropped:
        console.print(f"{the_plan.duplicates_dropped} duplicate draws were dropped")


@app.command()
def submit(
    spec: SpecArg,
    address: Address = None,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = "sqlite:///results.db",
    storage: Annotated[Path, typer.Option(help="Ray Tune storage folder")] = Path("runs"),
) -> None:
    """Run a sweep: every trial not yet completed, on local Ray or the cluster at --address."""
    from orchestrator.progress import summary_table
    from orchestrator.run import Settings
    from orchestrator.run import submit as run_submit
    from orchestrator.store.repository import ResultsStore

    with exit_codes():
        loaded = load_spec(spec)
        the_plan = expand(loaded)
        settings = Settings(
            mlflow_uri=mlflow_uri, results_db=results_db, storage=storage, address=address
        )
        console.print(f"sweep [bold]{the_plan.spec.name}[/]: {len(the_plan.trials)} trials")
        store = ResultsStore(results_db)
        try:
            outcome = run_submit(loaded, the_plan, settings, console, store)
        finally:
            store.close()
    rows = [(t.status, t.varied, t.metrics) for t in outcome.trials]
    metric = the_plan.spec.metric
    console.print()
    console.print(
        summary_table(
            f"summary of {the_plan.spec.name}, best {metric.name} first",
            rows,
            metric.name,
            metric.mode,
        )
    )
    ui = "mlflow ui" + (
        "" if mlflow_uri == DEFAULT_MLFLOW_URI else f" --backend-store-uri {mlflow_uri}"
    )
    console.print(
        f"results: orchestrator results {the_plan.spec.name}    runs: {ui}", soft_wrap=True
    )
    if outcome.failed:
        for t in outcome.failed:
            err_console.print(f"[red]failed:[/] {t.name} ({t.key}): {t.error}", highlight=False)
        err_console.print(f"{len(outcome.failed)} of {len(outcome.trials)} trials failed")
        raise typer.Exit(1)


@app.command()
def results(
    sweep: Annotated[str, typer.Argument(help="sweep name", show_default=False)],
    fmt: Annotated[OutputFormat, typer.Option("--format", help="output format")] = (
        OutputFormat.table
    ),
    results_db: ResultsDb = "sqlite:///results.db",
) -> None:
    """Print a sweep's trials with their settings and final metrics from the results store."""
    from orchestrator.store.repository import ResultsStore

    with exit_codes():
        _require_sqlite_file(results_db)
        store = ResultsStore(results_db)
        try:
            trials = store.trials(sweep)
            sweep_view = store.get_sweep(sweep)
        finally:
            store.close()
    records = [
        {
            "key": t.key,
            "name": t.name,
            "status": t.status,
            "attempts": t.attempts,
            "params": flatten(t.config),
            "metrics": t.metrics,
            "error": t.error,
            "host": t.host,
            "node": t.node_id,
            "mlflow_run_id": t.mlflow_run_id,
        }
        for t in trials
    ]
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif fmt is OutputFormat.csv:
        sys.stdout.write(_to_csv(records))
    else:
        from orchestrator.progress import summary_table

        metric = sweep_view.metric_name if sweep_view else "loss"
        mode = sweep_view.metric_mode if sweep_view else "min"
        rows = [(t.status, t.varied, t.metrics) for t in trials]
        console.print(summary_table(f"sweep {sweep}: {len(trials)} trials", rows, metric, mode))


def _to_csv(records: list[dict[str, Any]]) -> str:
    params = sorted({p for r in records for p in r["params"]})
    metrics = sorted({m for r in records for m in r["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["key", "name", "status", *params, *metrics])
    for r in records:
        writer.writerow(
            [
                r["key"],
                r["name"],
                r["status"],
                *(format_value(r["params"].get(p, "")) for p in params),
                *(r["metrics"].get(m, "") for m in metrics),
            ]
        )
    return out.getvalue()


def _stored_statuses(results_db: str, sweep: str) -> dict[str, str]:
    """Statuses of a sweep's stored trials; empty when there is no store or no such sweep yet."""
    from orchestrator.store.repository import ResultsStore

    if _missing_sqlite_file(results_db):
        return {}
    store = ResultsStore(results_db)
    try:
        if store.get_sweep(sweep) is None:
            return {}
        return {t.key: t.status for t in store.trials(sweep)}
    finally:
        store.close()


def _missing_sqlite_file(url: str) -> bool:
    prefix = "sqlite:///"
    return url.startswith(prefix) and not Path(url[len(prefix) :]).exists()


def _require_sqlite_file(url: str) -> None:
    # Reading from a store that does not exist would silently create an empty one.
    if _missing_sqlite_file(url):
        raise InputError(
            f"no results store at {url}; run `orchestrator submit SPEC` first or pass --results-db"
        )


if __name__ == "__main__":
    app()
