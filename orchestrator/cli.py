"""The `orchestrator` command line: parse, call, print, and map errors to exit codes.

Exit codes: 0 success; 1 the work ran but something failed (a trial, a service); 2 bad input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import cli_results
from orchestrator.cli_analyze import analyze
from orchestrator.cli_common import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    MlflowUri,
    ResultsDb,
    SpecArg,
    SweepArg,
    console,
    err_console,
    error,
    exit_codes,
    missing_sqlite_file,
    require_store,
)
from orchestrator.cli_report import report, write_report
from orchestrator.errors import InputError
from orchestrator.plan import Plan, expand
from orchestrator.spec import LoadedSpec, load_spec, load_spec_text

app = typer.Typer(
    help="gapsweep: sweeps of contrastive dual encoders for modality-gap research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the results store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

Address = Annotated[
    str | None,
    typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster address; local Ray if unset"),
]
Storage = Annotated[Path, typer.Option("--storage", help="Ray Tune storage folder")]
RerunFailed = Annotated[
    bool, typer.Option("--rerun-failed", help="also run trials that failed before")
]
MAX_TRIALS_WITHOUT_YES = int(os.environ.get("GAPSWEEP_MAX_TRIALS", "1000"))
Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        help=f"run a sweep larger than {MAX_TRIALS_WITHOUT_YES} trials "
        "(GAPSWEEP_MAX_TRIALS sets the limit)",
    ),
]


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec and every trial it expands to, without running anything."""
    with exit_codes():
        plan = expand(load_spec(spec))
    console.print(f"{spec}: valid, sweep {plan.spec.name!r} with {len(plan.trials)} trials")


@app.command()
def plan(spec: SpecArg, results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """Print the trials a spec expands to, and which of them a submit would run."""
    from rich.table import Table

    from orchestrator.store.repository import ResultsStore
    from orchestrator.warm_start import has_warm_starts, resolve_warm_starts

    with exit_codes():
        the_plan = expand(load_spec(spec))
        statuses = _stored_statuses(results_db, the_plan.spec.name)
        if has_warm_starts(the_plan):  # refuse sources that have not completed, as submit would
            require_store(results_db)
            store = ResultsStore(results_db)
            try:
                resolve_warm_starts(the_plan, store)
            finally:
                store.close()
    title = f"sweep {the_plan.spec.name}: {len(the_plan.trials)} trials"
    table = Table(title=title, title_justify="left")
    for column in ("#", "key", "trial", "stored status", "will run"):
        table.add_column(column)
    for t in the_plan.trials:
        stored = statuses.get(t.key, "new")
        runs = {"completed": "no", "failed": "with --rerun-failed"}.get(stored, "yes")
        table.add_row(str(t.index), t.key, t.name, stored, runs)
    console.print(table)
    if the_plan.duplicates_dropped:
        console.print(f"{the_plan.duplicates_dropped} duplicate draws were dropped")


def mlflow_runs_page(mlflow_uri: str, experiment_id: str) -> str:
    """Where to see the sweep's runs. MLflow 3 opens experiments on its GenAI overview unless
    the link asks for the model-training runs table."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if mlflow_uri.startswith(("http://", "https://")):
        return f"{mlflow_uri.rstrip('/')}/{page}"
    ui = (
        "mlflow ui"
        if mlflow_uri == DEFAULT_MLFLOW_URI
        else f"mlflow ui --backend-store-uri {mlflow_uri}"
    )
    return f"{ui}, then http://127.0.0.1:5000/{page}"


@app.command()
def submit(
    spec: SpecArg,
    address: Address = None,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    storage: Storage = Path("runs"),
    rerun_failed: RerunFailed = False,
    yes: Yes = False,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="write the HTML report here at the end")
    ] = None,
) -> None:
    """Run a sweep: every trial not yet completed, on local Ray or the cluster at --address."""
    with exit_codes():
        loaded = load_spec(spec)
        the_plan = expand(loaded)
    try:
        _run(loaded, the_plan, address, mlflow_uri, results_db, storage, rerun_failed, yes)
    finally:
        if report_dir is not None and not missing_sqlite_file(results_db):
            with exit_codes():
                page, _ = write_report(the_plan.spec.name, report_dir, results_db, mlflow_uri, None)
            console.print(f"report: {page}")


@app.command()
def resume(
    sweep: SweepArg,
    address: Address = None,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    storage: Storage = Path("runs"),
    rerun_failed: RerunFailed = False,
) -> None:
    """Go on with an interrupted sweep, from the spec stored with it."""
    from orchestrator.store.repository import ResultsStore

    with exit_codes():
        require_store(results_db)
        store = ResultsStore(results_db)
        try:
            text = store.spec_text(sweep)
        finally:
            store.close()
        loaded = load_spec_text(text, Path(f"<stored spec of {sweep}>"))
        the_plan = expand(loaded)
    _run(loaded, the_plan, address, mlflow_uri, results_db, storage, rerun_failed, yes=True)


@app.command()
def sync(
    sweep: SweepArg,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
) -> None:
    """Back-fill MLflow from the results store: runs, metric steps and statuses it missed."""
    from orchestrator.run import sync_mlflow
    from orchestrator.store.repository import ResultsStore

    with exit_codes():
        require_store(results_db)
        store = ResultsStore(results_db)
        try:
            behind = sync_mlflow(store, sweep, mlflow_uri, error)
        finally:
            store.close()
    if behind:
        error(f"{behind} trials could not be brought up to date; is MLflow reachable?")
        raise typer.Exit(1)
    console.print(f"MLflow is up to date with the results store for sweep {sweep}")


@db_app.command("upgrade")
def db_upgrade(results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """Create the results store, or upgrade its schema to this version of gapsweep."""
    from orchestrator.store.repository import ResultsStore, mask_url

    with exit_codes():
        store = ResultsStore(results_db)
        before, after = store.schema_change
        store.close()
    was = "empty" if before is None else f"at {before}"
    console.print(f"results store {mask_url(results_db)}: was {was}, now at {after}")


def _run(
    loaded: LoadedSpec,
    the_plan: Plan,
    address: str | None,
    mlflow_uri: str,
    results_db: str,
    storage: Path,
    rerun_failed: bool,
    yes: bool,
) -> None:
    from orchestrator.preflight import check_services
    from orchestrator.progress import summary_table
    from orchestrator.run import Settings
    from orchestrator.run import submit as run_submit
    from orchestrator.store.repository import ResultsStore
    from orchestrator.warm_start import resolve_warm_starts

    spec = the_plan.spec
    with exit_codes():
        if len(the_plan.trials) > MAX_TRIALS_WITHOUT_YES and not yes:
            raise InputError(
                f"{loaded.path}: the sweep expands to {len(the_plan.trials)} trials, more than "
                f"{MAX_TRIALS_WITHOUT_YES}; pass --yes to run it anyway"
            )
        settings = Settings(mlflow_uri, results_db, storage, address, rerun_failed)
        console.print(f"sweep [bold]{spec.name}[/]: {len(the_plan.trials)} trials")
        check_services(mlflow_uri, results_db, address)
        store = ResultsStore(results_db)
        try:
            the_plan = resolve_warm_starts(the_plan, store)
            outcome = run_submit(loaded, the_plan, settings, console, store)
        finally:
            store.close()
    rows = [(t.status, t.varied, t.metrics) for t in outcome.trials]
    title = f"summary of {spec.name}, best {spec.metric.name} first"
    console.print()
    console.print(summary_table(title, rows, spec.metric.name, spec.metric.mode))
    console.print(f"results: orchestrator results {spec.name}", soft_wrap=True)
    console.print(f"runs: {mlflow_runs_page(mlflow_uri, outcome.experiment_id)}", soft_wrap=True)
    if outcome.mlflow_behind:
        error(f"MLflow missed some results; run `orchestrator sync {spec.name}` once it is back")
    for t in outcome.failed:
        err_console.print(f"[red]failed:[/] {t.name} ({t.key}): {t.error}", highlight=False)
    if outcome.stopped:
        error(
            f"{len(outcome.stopped)} trials were stopped; go on with `orchestrator resume "
            f"{spec.name}` (or submit the spec again)"
        )
    if outcome.failed or outcome.stopped or outcome.mlflow_behind:
        if outcome.failed:
            err_console.print(f"{len(outcome.failed)} of {len(outcome.trials)} trials failed")
        raise typer.Exit(1)


def _stored_statuses(results_db: str, sweep: str) -> dict[str, str]:
    """Statuses of a sweep's stored trials; empty when there is no store or no such sweep yet."""
    from orchestrator.store.repository import ResultsStore

    if missing_sqlite_file(results_db):
        return {}
    store = ResultsStore(results_db)
    try:
        if store.get_sweep(sweep) is None:
            return {}
        return {t.key: t.status for t in store.trials(sweep)}
    finally:
        store.close()


app.command()(analyze)
app.command()(report)
app.command()(cli_results.sweeps)
app.command()(cli_results.status)
app.command()(cli_results.results)
app.command()(cli_results.compare)

if __name__ == "__main__":
    app()
