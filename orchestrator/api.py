"""gapsweep from Python, as from the shell: `from orchestrator import api`.

The same library the CLI calls (orchestrator/submit.py, orchestrator/report/), with the same
checks; what the CLI prints, these return, and what it turns into an exit code, these raise as
the project's errors (orchestrator/errors.py: InputError for bad input, ServiceError for a
service that does not answer, ...), never SystemExit. Stored sweeps come back as pandas
DataFrames (the `frames` extra). docs/api.md is each function's contract.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputError, SweepFailedError
from orchestrator.overrides import parse_overrides
from orchestrator.settings import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    DEFAULT_STORAGE,
    Services,
    SubmitSettings,
)
from orchestrator.spec import LoadedSpec
from orchestrator.submit import PlanPreview

if TYPE_CHECKING:  # pandas, Ray and rich load only when a function needs them
    import pandas as pd
    from rich.console import Console

    from orchestrator.report.read import StoredSweep
    from orchestrator.run import SweepOutcome
    from orchestrator.store.views import TrialView

__all__ = [
    "PlanPreview",
    "SubmitResult",
    "cancel",
    "compare",
    "load_spec",
    "plan",
    "results",
    "series",
    "submit",
]

# `--set` overrides: {path: value}, or "path=value" strings as the CLI takes them.
Overrides = Mapping[str, Any] | Sequence[str] | None
SpecPath = str | os.PathLike[str]


@dataclass(frozen=True)
class SubmitResult:
    """What a submit did. `ok` is what the CLI's exit code 0 means: no trial failed or was
    stopped and MLflow holds every result; `check()` raises where the CLI exits 1."""

    outcome: SweepOutcome
    results_db: str

    @property
    def sweep(self) -> str:
        return self.outcome.spec.name

    @property
    def trials(self) -> list[TrialView]:
        return self.outcome.trials

    @property
    def failed(self) -> list[TrialView]:
        return self.outcome.failed

    @property
    def stopped(self) -> list[TrialView]:
        return self.outcome.stopped

    @property
    def ok(self) -> bool:
        return not (self.failed or self.stopped or self.outcome.mlflow_behind)

    def check(self) -> SubmitResult:
        """This result when `ok`; a SweepFailedError saying what went wrong otherwise."""
        problems = [f"failed: {t.name} ({t.key}): {t.error}" for t in self.failed]
        if self.stopped:
            problems.append(f"{len(self.stopped)} trials were stopped; resume {self.sweep}")
        if self.outcome.mlflow_behind:
            problems.append(f"MLflow missed some results; run `orchestrator sync {self.sweep}`")
        if problems:
            raise SweepFailedError("\n".join(problems))
        return self

    def frame(self) -> pd.DataFrame:
        """The sweep's trials as `results()` reads them from the store."""
        return results(self.sweep, results_db=self.results_db)


def load_spec(path: SpecPath, overrides: Overrides = None) -> LoadedSpec:
    """The spec at `path`, its `--set` overrides applied to its base, validated."""
    from orchestrator.spec import load_spec as load

    return load(Path(path), _overrides(overrides))


def plan(
    path: SpecPath, overrides: Overrides = None, *, results_db: str | None = None, yes: bool = False
) -> PlanPreview:
    """The trials the spec expands to, and each one's stored status (none when new)."""
    from orchestrator.submit import preview

    return preview(Path(path), _results_db(results_db), _overrides(overrides), yes)


def submit(
    path: SpecPath,
    overrides: Overrides = None,
    *,
    results_db: str | None = None,
    mlflow_uri: str | None = None,
    storage: SpecPath = DEFAULT_STORAGE,
    address: str | None = None,
    rerun_failed: bool = False,
    yes: bool = False,
    report_dir: SpecPath | None = None,
    progress: bool = False,
    new_version: bool = False,
) -> SubmitResult:
    """Run every trial of the spec not yet completed, as `orchestrator submit` does; with
    `progress`, its live table (in Jupyter, a widget), else quietly. A spec changed under a
    stored sweep's name is refused unless it only adds trials or `new_version` is given."""
    from orchestrator import submit as library

    db = _results_db(results_db)
    uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
    services = Services(uri, db, Path(storage), address)
    report = None if report_dir is None else Path(report_dir)
    settings = SubmitSettings(services, rerun_failed, yes, report, new_version)
    loaded_overrides, console = _overrides(overrides), _console(progress)
    outcome = library.submit(Path(path), settings, console, loaded_overrides)
    _say_summary(outcome, console)
    return SubmitResult(outcome, db)


def cancel(sweep: str, *, results_db: str | None = None) -> list[str]:
    """Ask the live driver of `sweep`, wherever it runs, to stop its trials as Ctrl-C would,
    as `orchestrator cancel` does; returns who was asked (`host pid N`)."""
    from orchestrator import submit as library

    return [f"{d.host} pid {d.pid}" for d in library.cancel(sweep, _results_db(results_db))]


def results(
    sweep: str, *, results_db: str | None = None, version: int | None = None
) -> pd.DataFrame:
    """One row per trial of a version of the sweep (the latest by default): key, name, status,
    attempts, every setting by its dotted path, every final metric, error."""
    from orchestrator.report.frames import require, trials_frame

    require()
    return trials_frame(_read(sweep, results_db, "", version).trials)


def series(
    sweep: str, metric: str, *, results_db: str | None = None, version: int | None = None
) -> pd.DataFrame:
    """A metric's step series for every trial, long: key, name, step, value."""
    from orchestrator.report.frames import require, series_frame
    from orchestrator.report.read import read_series

    require()
    read, points = read_series(_results_db(results_db), sweep, metric, version)
    _warn(read)
    return series_frame(points, read.metric)


def compare(
    sweep: str,
    by: str | Sequence[str],
    metric: str | None = None,
    over: str | Sequence[str] | None = None,
    *,
    results_db: str | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """Completed trials grouped by the settings `by`, averaged over `over` (the seeds by
    default): one row per group with metric, n, mean, std, ci_low, ci_high."""
    from orchestrator.report.compare import group_by, group_records
    from orchestrator.report.frames import records_frame, require

    require()
    paths, averaged = _paths(by), None if over is None else _paths(over)
    read = _read(sweep, results_db, metric, version)
    groups = group_by(read.trials, paths, read.metric, averaged)
    frame = records_frame(group_records(groups, paths, read.metric))
    return frame.reindex(columns=[*paths, "metric", "n", "mean", "std", "ci_low", "ci_high"])


def _read(
    sweep: str, results_db: str | None, metric: str | None, version: int | None
) -> StoredSweep:
    from orchestrator.report.read import read_sweep

    read = read_sweep(_results_db(results_db), sweep, metric, version)
    _warn(read, stacklevel=4)
    return read


def _warn(read: StoredSweep, stacklevel: int = 3) -> None:
    """Old metric names read as today's: said once, at the caller's line."""
    for note in read.notes:
        warnings.warn(note, UserWarning, stacklevel=stacklevel)


def _results_db(given: str | None) -> str:
    return given or os.environ.get("ORCHESTRATOR_RESULTS_DB") or DEFAULT_RESULTS_DB


def _overrides(given: Overrides) -> dict[str, Any]:
    if given is None:
        return {}
    if isinstance(given, str):
        return parse_overrides([given])
    if isinstance(given, Mapping):
        bad = [repr(k) for k in given if not isinstance(k, str)]
        if bad:
            raise InputError(f"overrides: paths are dotted strings, not {', '.join(bad)}")
        return dict(given)
    return parse_overrides([str(item) for item in given])


def _paths(given: str | Sequence[str]) -> list[str]:
    items = given.split(",") if isinstance(given, str) else list(given)
    paths = [p.strip() for p in items if p.strip()]
    if not paths:
        raise InputError("compare: give at least one setting to group by")
    return paths


def _say_summary(outcome: SweepOutcome, console: Console) -> None:
    """The CLI's summary table, best trial first: the live table's last frame in Jupyter may
    be up to one refresh old."""
    from orchestrator.progress import summary_table

    spec = outcome.spec
    rows = [(t.status, t.varied, t.metrics) for t in outcome.trials]
    title = f"summary of {spec.name}, best {spec.primary.name} first"
    console.print(summary_table(title, rows, spec.primary.name, spec.primary.mode))


def _console(progress: bool) -> Console:
    """The console the sweep's tables go to: stdout (rich finds Jupyter itself and draws the
    live table in a widget there), or one that says nothing."""
    from rich.console import Console

    if progress:
        return Console(emoji=False)
    return Console(file=io.StringIO(), quiet=True, force_jupyter=False)
