"""The live Rich table of a running sweep and the summary table at its end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from orchestrator.plan import format_value

LIVE_METRICS = ("loss", "gap_norm", "zero_shot_acc")
# A sweep measured on a labelled folder (`eval.folder`) shows how it classifies the folder:
# what the user pointed it at, where zero_shot_acc is that of the training captions' own data.
FOLDER_ZERO_SHOT = "folder_zero_shot_acc"
STATUS_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "stopped": "yellow",
    "pruned": "magenta",
    "skipped": "dim green",
}


@dataclass
class TrialLine:
    name: str
    varied: dict[str, Any]
    status: str = "pending"
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class SweepProgress:
    """State shown while the sweep runs; updated by the recorder, rendered by rich.live."""

    def __init__(self, sweep: str, total_steps: int | None) -> None:
        self.sweep = sweep
        self.total_steps = total_steps
        self.lines: dict[str, TrialLine] = {}

    def add(self, key: str, name: str, varied: dict[str, Any], status: str = "pending") -> None:
        self.lines[key] = TrialLine(name=name, varied=varied, status=status)

    def update(
        self,
        key: str,
        status: str | None = None,
        step: int | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        line = self.lines[key]
        if status is not None:
            line.status = status
        if step is not None:
            line.step = step
        if metrics:
            line.metrics.update(metrics)

    def __rich__(self) -> Table:
        counts = {s: sum(1 for ln in self.lines.values() if ln.status == s) for s in STATUS_STYLE}
        title = f"sweep {self.sweep}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        paths = _varied_paths(self.lines.values())
        table = Table(title=title, title_justify="left")
        table.add_column("status")
        for path in paths:
            table.add_column(path.rsplit(".", 1)[-1], justify="right")
        table.add_column("step", justify="right")
        shown = live_metrics(line.metrics for line in self.lines.values())
        for metric in shown:
            table.add_column(metric, justify="right")
        for line in self.lines.values():
            style = STATUS_STYLE.get(line.status, "")
            step = "" if line.step is None else str(line.step)
            if line.step is not None and self.total_steps:
                step = f"{line.step}/{self.total_steps}"
            table.add_row(
                f"[{style}]{line.status}[/]",
                *(format_value(line.varied.get(p, "")) for p in paths),
                step,
                *(_fmt(line.metrics.get(m)) for m in shown),
            )
        return table


def summary_table(
    title: str, rows: list[tuple[str, dict[str, Any], dict[str, float]]], metric: str, mode: str
) -> Table:
    """Rows (status, varied, final metrics) sorted best first by the sweep's metric."""

    def sort_key(row: tuple[str, dict[str, Any], dict[str, float]]) -> tuple[int, float]:
        value = row[2].get(metric)
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    ordered = sorted(rows, key=sort_key)
    paths = _varied_paths(TrialLine(name="", varied=v) for _, v, _ in ordered)
    shown = live_metrics(metrics for _, _, metrics in ordered)
    columns = [metric, *[m for m in shown if m != metric]]
    table = Table(title=title, title_justify="left")
    table.add_column("status")
    for path in paths:
        table.add_column(path, justify="right")
    for col in columns:
        table.add_column(
            col + (" ▼" if col == metric and mode == "min" else " ▲" if col == metric else ""),
            justify="right",
        )
    for status, varied, metrics in ordered:
        style = STATUS_STYLE.get(status, "")
        table.add_row(
            f"[{style}]{status}[/]",
            *(format_value(varied.get(p, "")) for p in paths),
            *(_fmt(metrics.get(c)) for c in columns),
        )
    return table


def live_metrics(reported: Iterable[dict[str, float]]) -> tuple[str, ...]:
    """The metric columns of the tables: LIVE_METRICS, with the folder's zero-shot accuracy in
    place of zero_shot_acc where the trials report one."""
    if any(FOLDER_ZERO_SHOT in metrics for metrics in reported):
        return tuple(FOLDER_ZERO_SHOT if m == "zero_shot_acc" else m for m in LIVE_METRICS)
    return LIVE_METRICS


def _varied_paths(lines: Any) -> list[str]:
    paths: dict[str, None] = {}
    for line in lines:
        paths.update(dict.fromkeys(line.varied))
    return list(paths)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if math.isfinite(value) else str(value)
