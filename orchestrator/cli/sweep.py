"""The sweep commands: validate, plan, submit and resume (the library: orchestrator/submit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    DEFAULT_STORAGE,
    Address,
    MlflowUri,
    RerunFailed,
    ResultsDb,
    Set,
    SpecArg,
    Storage,
    SweepArg,
    console,
    err_console,
    error,
    exit_codes,
)
from orchestrator.errors import without_passwords
from orchestrator.overrides import parse_overrides
from orchestrator.settings import MAX_TRIALS_WITHOUT_YES, Services, SubmitSettings

if TYPE_CHECKING:  # importing the runner imports Ray, which only submit and resume need
    from orchestrator.plan import Plan
    from orchestrator.run import SweepOutcome
    from orchestrator.spec import Resources

Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        help=f"accept a sweep larger than {MAX_TRIALS_WITHOUT_YES} trials "
        "(GAPSWEEP_MAX_TRIALS sets the limit)",
    ),
]
NewVersion = Annotated[
    bool,
    typer.Option(
        "--new-version",
        help="start the next version of a sweep whose spec changed more than adding trials",
    ),
]
ReportDir = Annotated[
    Path | None, typer.Option("--report", help="write the HTML report here at the end")
]


def validate(spec: SpecArg, overrides: Set = None, yes: Yes = False) -> None:
    """Check a spec and every trial it expands to, without running anything."""
    from orchestrator import submit as library

    with exit_codes():
        plan = library.validate(spec, parse_overrides(overrides or []), yes)
    if plan.spec.search == "optuna":
        what = f"an Optuna study of {plan.spec.num_samples} trials"
    else:
        what = _trials(len(plan.trials))
    console.print(f"{spec}: valid, sweep {plan.spec.name!r} with {what}")
    _say_stages(plan)


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _say_stages(plan: Plan) -> None:
    for stage in plan.stages:
        console.print(
            f"  after stage {stage.spec.name!r} ({_trials(len(stage.trials))}), whose best trial "
            f"every trial of {plan.spec.name!r} starts from"
        )


def plan(
    spec: SpecArg,
    overrides: Set = None,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    yes: Yes = False,
) -> None:
    """Print the trials a spec expands to, and which of them a submit would run."""
    from rich.table import Table

    from orchestrator import submit as library
    from orchestrator.packing import pack_units
    from orchestrator.plan import trials_to_run

    with exit_codes():
        preview = library.preview(spec, results_db, parse_overrides(overrides or []), yes)
    trials = preview.plan.trials
    title = f"sweep {preview.plan.spec.name}: {len(trials)} trials"
    table = Table(title=title, title_justify="left")
    # As submit packs them: the trials it would run (without --rerun-failed).
    packing = pack_units(preview.plan.spec, trials_to_run(preview.plan, preview.statuses, False))
    in_pack = {m: u.key for u in packing.units for m in u.members if u.packed}
    packed = preview.plan.spec.pack != 1
    for column in ("#", "key", "trial", "stored status", "will run", *(["pack"] * packed)):
        table.add_column(column)
    for t in trials:
        stored = preview.statuses.get(t.key, "new")
        runs = {"completed": "no", "failed": "with --rerun-failed"}.get(stored, "yes")
        pack = [in_pack.get(t.key, "alone")] if packed else []
        table.add_row(str(t.index), t.key, t.name, stored, runs, *pack)
    console.print(table)
    for line in packing.summary() if packed else []:
        console.print(line)
    drawn = preview.plan.spec
    if drawn.search == "optuna":
        held = len(preview.statuses)
        console.print(
            f"an Optuna study: the store holds {held} of its {drawn.num_samples} trials; "
            f"{max(0, drawn.num_samples - held)} remain to be drawn"
        )
    _say_stages(preview.plan)
    if preview.plan.duplicates_dropped:
        console.print(f"{preview.plan.duplicates_dropped} duplicate draws were dropped")
    _say_how_gpus_are_shared(preview.plan.spec.resources)


def _say_how_gpus_are_shared(resources: Resources) -> None:
    sharing = resources.trials_per_gpu
    if sharing is not None:
        console.print(
            f"{sharing} trials share each GPU (resources.gpu: {resources.gpu:g}); each keeps to "
            f"{resources.gpu:.0%} of its memory and reports gpu_peak_memory_gb"
        )
    if resources.gpu > 0 and resources.cpu < 2:
        console.print(
            f"note: each GPU trial has {resources.cpu:g} CPU for its data, evaluations and "
            "checkpoints; 2 to 4 (resources.cpu) keep a GPU busier"
        )


def submit(
    spec: SpecArg,
    overrides: Set = None,
    address: Address = None,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    storage: Storage = DEFAULT_STORAGE,
    rerun_failed: RerunFailed = False,
    yes: Yes = False,
    report_dir: ReportDir = None,
    new_version: NewVersion = False,
) -> None:
    """Run a sweep: every trial not yet completed, on local Ray or the cluster at --address."""
    from orchestrator import submit as library

    services = Services(mlflow_uri, results_db, storage, address)
    settings = SubmitSettings(services, rerun_failed, yes, report_dir, new_version)
    with exit_codes():
        outcome = library.submit(spec, settings, console, parse_overrides(overrides or []))
    _print_outcome(outcome, mlflow_uri)


def resume(
    sweep: SweepArg,
    address: Address = None,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    storage: Storage = DEFAULT_STORAGE,
    rerun_failed: RerunFailed = False,
) -> None:
    """Go on with an interrupted sweep, from the spec stored with it."""
    from orchestrator import submit as library

    services = Services(mlflow_uri, results_db, storage, address)
    settings = SubmitSettings(services, rerun_failed, yes=True)
    with exit_codes():
        outcome = library.resume(sweep, settings, console)
    _print_outcome(outcome, mlflow_uri)


def cancel(sweep: SweepArg, results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """Stop a running sweep from any terminal, as Ctrl-C in its own would: its trials stop
    (kept at their last checkpoint), and `orchestrator resume` goes on."""
    from orchestrator import submit as library

    with exit_codes():
        asked = library.cancel(sweep, results_db)
    for driver in asked:
        console.print(
            f"asked the driver of {driver.sweep} (process {driver.pid} on {driver.host}) to "
            "stop its trials; it stops within seconds",
            soft_wrap=True,
        )
    console.print(f"then go on with `orchestrator resume {sweep}`", soft_wrap=True)


def mlflow_runs_page(mlflow_uri: str, experiment_id: str) -> str:
    """Where to see the sweep's runs. MLflow 3 opens experiments on its GenAI overview unless
    the link asks for the model-training runs table."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if mlflow_uri.startswith(("http://", "https://")):
        return f"{without_credentials(mlflow_uri).rstrip('/')}/{page}"
    ui = (
        "mlflow ui"
        if mlflow_uri == DEFAULT_MLFLOW_URI
        else f"mlflow ui --backend-store-uri {without_credentials(mlflow_uri)}"
    )
    return f"{ui}, then http://127.0.0.1:5000/{page}"


def without_credentials(uri: str) -> str:
    """The URI with any user and password left out: the browser asks for them, the terminal
    (and its scrollback, and CI logs) never shows them."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _print_outcome(outcome: SweepOutcome, mlflow_uri: str) -> None:
    """The summary table, where to look next, and exit 1 when anything failed or stopped."""
    from orchestrator.progress import summary_table

    spec = outcome.spec
    rows = [(t.status, t.varied, t.metrics) for t in outcome.trials]
    title = f"summary of {spec.name}, best {spec.primary.name} first"
    console.print()
    console.print(summary_table(title, rows, spec.primary.name, spec.primary.mode))
    console.print(f"results: orchestrator results {spec.name}", soft_wrap=True)
    console.print(f"runs: {mlflow_runs_page(mlflow_uri, outcome.experiment_id)}", soft_wrap=True)
    if outcome.mlflow_behind:
        error(f"MLflow missed some results; run `orchestrator sync {spec.name}` once it is back")
    for t in outcome.failed:
        why = escape(without_passwords(t.error or ""))
        err_console.print(f"[red]failed:[/] {escape(t.name)} ({t.key}): {why}", highlight=False)
    if outcome.cancelled_by is not None:
        error(f"sweep {spec.name} was cancelled by `orchestrator cancel` ({outcome.cancelled_by})")
    if outcome.stopped or outcome.cancelled_by is not None:
        error(
            f"{len(outcome.stopped)} trials were stopped; go on with `orchestrator resume "
            f"{spec.name}` (or submit the spec again)"
        )
    if outcome.failed or outcome.stopped or outcome.mlflow_behind or outcome.cancelled_by:
        if outcome.failed:
            err_console.print(f"{len(outcome.failed)} of {len(outcome.trials)} trials failed")
        raise typer.Exit(1)
