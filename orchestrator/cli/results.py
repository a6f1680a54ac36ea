"""Commands that read the results store: sweeps, status, results and compare."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli.common import (
    DEFAULT_RESULTS_DB,
    ResultsDb,
    SweepArg,
    Version,
    console,
    err_console,
    exit_codes,
)
from orchestrator.errors import InputError
from orchestrator.plan import format_value
from orchestrator.report.read import StoredSweep, read_sweep
from orchestrator.report.records import records_csv, trial_record

if TYPE_CHECKING:
    from orchestrator.report.compare import GroupStats
    from orchestrator.store.lease import Driver

# A trial `running` in the store whose driver is gone is shown as orphaned (shown_status).
SHOWN_STATUSES = ("pending", "running", "orphaned", "completed", "pruned", "failed", "stopped")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class ExportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class SeriesFormat(StrEnum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


Out = Annotated[
    Path | None,
    typer.Option("--out", help="write to this file rather than stdout (parquet needs it)"),
]


def _read(
    results_db: str, sweep: str, metric: str | None = "", version: int | None = None
) -> StoredSweep:
    """A version of the sweep (the latest by default) under today's metric names; a note on
    stderr, once, where an old name is read as a new one or the sweep has several versions."""
    read = read_sweep(results_db, sweep, metric, version)
    _say_notes(read)
    return read


def _say_notes(read: StoredSweep) -> None:
    for note in read.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _check_out(form: str | None, out: Path | None, default: str) -> str:
    """The format to write: `form`, else the suffix of the --out file, else `default`.
    Parquet is binary: it goes to a file, and needs pyarrow (a one-line exit 2 without)."""
    if form is None and out is not None:
        form = out.suffix.lstrip(".").lower()
        if form not in ("csv", "json", "parquet"):
            raise InputError(f"--out {out}: give --format csv, json or parquet for this file")
    if form == "table" and out is not None:
        raise InputError("--out writes csv, json or parquet: give --format too")
    if form == "parquet":
        from orchestrator.report.frames import require

        if out is None:
            raise InputError("--format parquet writes a file: give --out FILE")
        require(parquet=True)
    return form or default


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    err_console.print(f"wrote {out}", highlight=False, soft_wrap=True)


def _json(records: list[dict[str, Any]], out: Path | None) -> str:
    # Indented for a person at a terminal; compact for a pipe or a file, where the C encoder
    # writes 10,000 trials in a tenth of the time the indenting pure-Python one takes.
    indent = 2 if out is None and sys.stdout.isatty() else None
    return json.dumps(records, indent=indent) + "\n"


def sweeps(results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """List the sweeps in the results store: the trials of each one's latest version by status,
    and its live driver (host, pid, since, last heartbeat). A trial left `running` by a driver
    that is gone shows as orphaned: `orchestrator resume` runs it again."""
    from orchestrator.report.read import version_trials
    from orchestrator.store.repository import ResultsStore

    with exit_codes(), ResultsStore.open_existing(results_db) as store:
        drivers = {d.sweep: d for d in store.drivers.live()}
        rows = [
            (
                s,
                max(store.versions.numbers(s.name), default=1),
                version_trials(store, s.name, None)[1],
            )
            for s in store.list_sweeps()
        ]
    table = Table(title=f"{len(rows)} sweeps", title_justify="left")
    for column in ("sweep", "version", "created", "trials", *SHOWN_STATUSES, "driver"):
        table.add_column(
            column, justify="right" if column not in ("sweep", "created", "driver") else "left"
        )
    for sweep, version, trials in rows:
        driver = drivers.get(sweep.name)
        shown = [shown_status(t.status, driver is not None) for t in trials]
        table.add_row(
            sweep.name,
            str(version),
            sweep.created_at.strftime("%Y-%m-%d %H:%M"),
            str(len(trials)),
            *(str(c) if (c := shown.count(s)) else "" for s in SHOWN_STATUSES),
            "" if driver is None else _driver(driver),
        )
    console.print(table)


def shown_status(status: str, driver_live: bool) -> str:
    """A trial's status as `sweeps` and `status` show it: `running` only while a driver runs it."""
    return "orphaned" if status == "running" and not driver_live else status


def _driver(driver: Driver) -> str:
    since = driver.since.strftime("%Y-%m-%d %H:%M")
    said = f"{driver.host} pid {driver.pid}, since {since}, beat {driver.heartbeat_age_s:.0f} s ago"
    return said + (", cancelling" if driver.cancel_requested_by else "")


def status(
    sweep: SweepArg, results_db: ResultsDb = DEFAULT_RESULTS_DB, version: Version = None
) -> None:
    """Show each trial's status, attempts, where it ran, and its error."""
    from orchestrator.store.repository import ResultsStore

    with exit_codes():
        trials = _read(results_db, sweep, "", version).trials
        with ResultsStore.open_existing(results_db) as store:
            live = any(d.sweep == sweep for d in store.drivers.live())
    table = Table(title=f"sweep {sweep}: {len(trials)} trials", title_justify="left")
    for column in ("trial", "key", "status", "attempts", "step", "resumed from", "host", "error"):
        table.add_column(column)
    for t in trials:
        table.add_row(
            t.name,
            t.key,
            shown_status(t.status, live),
            str(t.attempts),
            "" if t.last_step is None else str(t.last_step),
            "" if t.resumed_from_step is None else str(t.resumed_from_step),
            t.host or "",
            t.error or "",
        )
    console.print(table)


def results(
    sweep: SweepArg,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="table, csv, json or parquet (with --out) [default: table, or the --out suffix]",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="sort by this metric (default: the sweep's)")
    ] = None,
    out: Out = None,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    version: Version = None,
    pareto: Annotated[
        bool,
        typer.Option(
            "--pareto",
            help="only the best trials: the Pareto front of a sweep with several objectives",
        ),
    ] = False,
) -> None:
    """Print a sweep's trials with every setting and final metric from the results store."""
    from orchestrator.progress import summary_table

    with exit_codes():
        form = ExportFormat(_check_out(fmt, out, "table"))
        read = _read(results_db, sweep, metric if form is ExportFormat.table else "", version)
        if pareto:
            read = replace(read, trials=read.pareto())
        if form is ExportFormat.parquet and out is not None:
            from orchestrator.report.frames import trials_frame, write_parquet

            err_console.print(f"wrote {write_parquet(trials_frame(read.trials), out)}")
            return
    records = [trial_record(t) for t in read.trials]
    if form is ExportFormat.json:
        _emit(_json(records, out), out)
    elif form is ExportFormat.csv:
        _emit(records_csv(records), out)
    else:
        view, name = read.view, read.metric
        mode = view.metric_mode if name == view.metric_name else _mode_of(name)
        rows = [(t.status, t.varied, t.metrics) for t in read.trials]
        title = f"sweep {sweep}: {len(read.trials)} trials"
        console.print(summary_table(title, rows, name, mode))


def series(
    sweep: SweepArg,
    metric: Annotated[str, typer.Argument(help="metric name", show_default=False)],
    fmt: Annotated[
        SeriesFormat | None,
        typer.Option(
            "--format",
            help="csv, json or parquet (with --out) [default: csv, or the --out suffix]",
            show_default=False,
        ),
    ] = None,
    out: Out = None,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    version: Version = None,
) -> None:
    """Export a metric's step series of every trial, one row per (trial key, step)."""
    from orchestrator.report.frames import series_records
    from orchestrator.report.read import read_series

    with exit_codes():
        form = SeriesFormat(_check_out(fmt, out, "csv"))
        read, points = read_series(results_db, sweep, metric, version)
        _say_notes(read)
        if form is SeriesFormat.parquet and out is not None:
            from orchestrator.report.frames import series_frame, write_parquet

            err_console.print(f"wrote {write_parquet(series_frame(points, read.metric), out)}")
            return
    records = series_records(points)
    if form is SeriesFormat.json:
        _emit(_json(records, out), out)
    else:
        _emit(_series_csv(records), out)


def _series_csv(records: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["key", "name", "step", "value"])
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue()


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
    version: Version = None,
) -> None:
    """Group trials by settings: mean, std and 95% t interval of a metric over the seeds (or
    --over); any other setting that varies within a group is named, not averaged away."""
    from orchestrator.report.compare import group_by, group_records, plot_groups, records_text

    paths, averaged = _paths(by), None if over is None else _paths(over)
    with exit_codes():
        if plot is not None and len(paths) > 1:
            raise InputError("--plot draws one setting: give --by a single path")
        read = _read(results_db, sweep, metric, version)
        groups = group_by(read.trials, paths, read.metric, averaged)
    name = read.metric
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
