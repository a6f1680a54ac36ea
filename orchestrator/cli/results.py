"""Commands that read the results store: sweeps, status, results and compare."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import (
    DEFAULT_RESULTS_DB,
    ResultsDb,
    SweepArg,
    console,
    err_console,
    exit_codes,
)
from orchestrator.errors import InputError
from orchestrator.plan import format_value
from orchestrator.report.legacy_names import metric_held, todays_names
from orchestrator.report.records import records_csv, trial_record

if TYPE_CHECKING:
    from orchestrator.report.compare import GroupStats
    from orchestrator.store.views import SweepView, TrialView

STATUSES = ("pending", "running", "completed", "failed", "stopped")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _sweep_and_trials(url: str, sweep: str) -> tuple[SweepView, list[TrialView]]:
    from orchestrator.store.repository import ResultsStore

    with ResultsStore.open_existing(url) as store:
        return store.sweep_and_trials(sweep)


def _under_todays_names(trials: list[TrialView], metric: str) -> tuple[list[TrialView], str]:
    """The trials with their metrics under today's names, and the name they hold `metric` by
    ("" for none); a note on stderr, once, where an old name is read as a new one."""
    read = todays_names(trials)
    name, asked = metric_held(metric, read.trials) if metric else (metric, None)
    for note in (*read.notes, *([asked] if asked else [])):
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return read.trials, name


def sweeps(results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """List the sweeps in the results store with their trials by status."""
    from orchestrator.store.repository import ResultsStore

    with exit_codes(), ResultsStore.open_existing(results_db) as store:
        rows = [(s, store.trials(s.name)) for s in store.list_sweeps()]
    table = Table(title=f"{len(rows)} sweeps", title_justify="left")
    for column in ("sweep", "created", "trials", *STATUSES):
        table.add_column(column, justify="left" if column in ("sweep", "created") else "right")
    for sweep, trials in rows:
        counts = [sum(t.status == s for t in trials) for s in STATUSES]
        table.add_row(
            sweep.name,
            sweep.created_at.strftime("%Y-%m-%d %H:%M"),
            str(len(trials)),
            *(str(c) if c else "" for c in counts),
        )
    console.print(table)


def status(sweep: SweepArg, results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """Show each trial's status, attempts, where it ran, and its error."""
    with exit_codes():
        _, trials = _sweep_and_trials(results_db, sweep)
    table = Table(title=f"sweep {sweep}: {len(trials)} trials", title_justify="left")
    for column in ("trial", "key", "status", "attempts", "step", "resumed from", "host", "error"):
        table.add_column(column)
    for t in trials:
        table.add_row(
            t.name,
            t.key,
            t.status,
            str(t.attempts),
            "" if t.last_step is None else str(t.last_step),
            "" if t.resumed_from_step is None else str(t.resumed_from_step),
            t.host or "",
            t.error or "",
        )
    console.print(table)


def results(
    sweep: SweepArg,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="output format")] = (
        OutputFormat.table
    ),
    metric: Annotated[
        str | None, typer.Option("--metric", help="sort by this metric (default: the sweep's)")
    ] = None,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
) -> None:
    """Print a sweep's trials with every setting and final metric from the results store."""
    from orchestrator.progress import summary_table

    with exit_codes():
        view, stored = _sweep_and_trials(results_db, sweep)
    asked = metric or view.metric_name
    trials, name = _under_todays_names(stored, asked if fmt is OutputFormat.table else "")
    records = [trial_record(t) for t in trials]
    if fmt is OutputFormat.json:
        # Indented for a person at a terminal; compact for a pipe, where the C encoder writes
        # 10,000 trials in a tenth of the time the indenting pure-Python one takes.
        indent = 2 if sys.stdout.isatty() else None
        sys.stdout.write(json.dumps(records, indent=indent) + "\n")
    elif fmt is OutputFormat.csv:
        sys.stdout.write(records_csv(records))
    else:
        mode = view.metric_mode if asked == view.metric_name else _mode_of(name)
        rows = [(t.status, t.varied, t.metrics) for t in trials]
        console.print(summary_table(f"sweep {sweep}: {len(trials)} trials", rows, name, mode))


def compare(
    sweep: SweepArg,
    by: Annotated[
        str,
        typer.Option("--by", help="settings to group by, comma-separated", show_default=False),
    ],
    over: Annotated[
        str | None,
        typer.Option("--over", help="settings to average over, comma-separated (default: seeds)"),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="metric to compare (default: the sweep's)")
    ] = None,
    form: Annotated[
        OutputFormat, typer.Option("--format", help="table, csv or json (to stdout)")
    ] = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the curve as a PNG")] = None,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
) -> None:
    """Group trials by settings: mean, std and 95% t interval of a metric over the seeds (or
    --over); any other setting that varies within a group is named, not averaged away."""
    from orchestrator.report.compare import group_by, group_records, plot_groups, records_text

    paths, averaged = _paths(by), None if over is None else _paths(over)
    with exit_codes():
        if plot is not None and len(paths) > 1:
            raise InputError("--plot draws one setting: give --by a single path")
        view, stored = _sweep_and_trials(results_db, sweep)
        trials, name = _under_todays_names(stored, metric or view.metric_name)
        groups = group_by(trials, paths, name, averaged)
    if form is not OutputFormat.table:
        sys.stdout.write(records_text(group_records(groups, paths, name), form.value))
    else:
        console.print(_compare_table(f"sweep {sweep}: {name} by {', '.join(paths)}", paths, groups))
    if plot is not None:
        console.print(f"wrote {plot_groups(groups, paths[0], name, sweep, plot)}")


def _paths(option: str) -> list[str]:
    return [p.strip() for p in option.split(",") if p.strip()]


def _compare_table(title: str, paths: list[str], groups: list[GroupStats]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (*paths, "trials", "mean", "std", "95% interval"):
        table.add_column(column, justify="right")
    for g in groups:
        table.add_row(
            *(format_value(v) for v in g.values),
            str(g.n),
            f"{g.mean:.4f}",
            "" if g.n < 2 else f"{g.std:.4f}",
            f"[{g.ci_low:.4f}, {g.ci_high:.4f}]",
        )
    return table


def _mode_of(metric: str) -> str:
    better_high = ("acc", "recall", "cosine", "separability")
    return "max" if any(word in metric for word in better_high) else "min"
