"""Grouping a sweep's trials by one or more settings, with mean, spread and a 95% interval over
the settings averaged over (seeds by default); any other setting that varies within a group is
an error, not something silently averaged away."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.plan import SEED_PATHS, flatten, format_value
from orchestrator.report.intervals import mean_interval
from orchestrator.store.views import TrialView


@dataclass(frozen=True)
class GroupStats:
    values: tuple[Any, ...]  # one per grouped setting
    n: int
    mean: float
    std: float  # sample standard deviation; nan for a single trial
    ci_low: float
    ci_high: float


def group_by(
    trials: list[TrialView], by: Sequence[str], metric: str, over: Sequence[str] | None = None
) -> list[GroupStats]:
    """Completed trials grouped by the settings `by`, averaged over `over` (default: the seeds),
    sorted by the grouped values. Every other setting the sweep varies must be equal within a
    group, or the problem says which ones differ."""
    if isinstance(by, str):  # one path, not its characters
        by = [by]
    completed = [t for t in trials if t.status == "completed"]
    if not completed:
        raise InputError("the sweep has no completed trials to compare")
    settings = [flatten(t.config) for t in completed]
    problems = [
        f"--{flag} {path}: not a setting of this sweep's trials"
        for flag, paths in (("by", by), ("over", over or ()))
        for path in paths
        if path not in settings[0]
    ]
    if not any(metric in t.metrics for t in completed):
        known = sorted({m for t in completed for m in t.metrics})
        problems.append(f"--metric {metric}: not reported by this sweep; known: {', '.join(known)}")
    if problems:
        raise InputError(problems)
    groups: dict[str, tuple[tuple[Any, ...], list[float]]] = defaultdict(lambda: ((), []))
    members: dict[str, list[int]] = defaultdict(list)
    for index, (trial, flat) in enumerate(zip(completed, settings, strict=True)):
        values = tuple(flat[p] for p in by)
        key = repr(values)
        members[key].append(index)
        value = trial.metrics.get(metric)
        if value is not None and math.isfinite(value):
            groups[key] = (values, [*groups[key][1], value])
    _check_rest_equal(completed, settings, members, by, SEED_PATHS if over is None else over)
    stats = [_stats(values, xs) for values, xs in groups.values()]
    return sorted(stats, key=lambda g: [_sort_key(v) for v in g.values])


def _check_rest_equal(
    trials: list[TrialView],
    settings: list[dict[str, Any]],
    members: dict[str, list[int]],
    by: Sequence[str],
    over: Sequence[str],
) -> None:
    swept = {p for t in trials for p in t.varied} - {*by, *over}
    differing = sorted(
        path
        for path in swept
        if any(len({repr(settings[i].get(path)) for i in group}) > 1 for group in members.values())
    )
    if differing:
        raise InputError(
            [
                f"{path}: differs within a group; add it to --by (group by it) or to --over "
                "(average over it)"
                for path in differing
            ]
        )


def _stats(values: tuple[Any, ...], xs: list[float]) -> GroupStats:
    mean, std, half = mean_interval(xs)
    return GroupStats(values, len(xs), mean, std, mean - half, mean + half)


def _sort_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def group_records(groups: list[GroupStats], by: Sequence[str], metric: str) -> list[dict[str, Any]]:
    """One flat record per group, for CSV and JSON: the grouped settings, then the statistics."""
    records = []
    for g in groups:
        stats = {k: v for k, v in asdict(g).items() if k != "values"}
        std = stats["std"]
        stats["std"] = None if isinstance(std, float) and math.isnan(std) else std
        records.append({**dict(zip(by, g.values, strict=True)), "metric": metric, **stats})
    return records


def records_text(records: list[dict[str, Any]], form: str) -> str:
    if form == "json":
        return json.dumps(records, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else ["metric"])
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def plot_groups(groups: list[GroupStats], path: str, metric: str, sweep: str, out: Path) -> Path:
    """The metric against the first grouped setting (`--plot` takes one `--by`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = all(isinstance(g.values[0], int | float) for g in groups)
    xs = [g.values[0] if numeric else i for i, g in enumerate(groups)]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    means = [g.mean for g in groups]
    lower = [g.mean - g.ci_low for g in groups]
    upper = [g.ci_high - g.mean for g in groups]
    ax.errorbar(xs, means, yerr=[lower, upper], marker="o", capsize=4)
    if numeric and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, [format_value(g.values[0]) for g in groups], rotation=30)
    ax.set_xlabel(path)
    ax.set_ylabel(f"{metric} (mean, 95% interval)")
    ax.set_title(f"{sweep}: {metric} by {path}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
