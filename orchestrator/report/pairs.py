"""Report figures for sweeps over a categorical setting such as the modality `pair` (the paper's
Figure 1 across model families): a bar chart of a metric per category, and a grid of 2-D maps,
one row per category and one column per value of the other setting (e.g. at init and trained).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from orchestrator.plan import SEED_PATHS, format_value
from orchestrator.report.figures import (
    interval,
    is_number,
    settings_of,
)
from orchestrator.store.views import TrialView
from orchestrator.tracking.artifacts import draw_modality_map


def categorical_setting(trials: list[TrialView]) -> str | None:
    """The first swept setting whose values are not numbers, such as `pair` or `data.name`."""
    for path in settings_of(trials):
        if any(not is_number(t.varied.get(path)) for t in trials):
            return path
    return None


def bars_by_category(trials: list[TrialView], metric: str) -> Figure | None:
    """Final `metric` per category (mean and 95% interval over seeds), one bar per value of the
    other settings side by side, e.g. gap_norm per modality pair at init and after training."""
    done = [t for t in trials if t.status == "completed" and metric in t.metrics]
    category = categorical_setting(done)
    if category is None:
        return None
    others = [p for p in settings_of(done) if p != category]
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in done:
        cells[format_value(t.varied[category])][_label(t, others)].append(t.metrics[metric])
    groups = list(dict.fromkeys(format_value(t.varied[category]) for t in done))
    variants = list(dict.fromkeys(_label(t, others) for t in done))
    width = 0.8 / len(variants)
    fig = Figure(figsize=(max(5.0, 1.6 * len(groups) * max(1, len(variants) / 2)), 4))
    ax = fig.subplots()
    for i, variant in enumerate(variants):
        stats = [_interval_or_gap(cells[g][variant]) for g in groups]
        xs = np.arange(len(groups)) + (i - (len(variants) - 1) / 2) * width
        ax.bar(xs, [m for m, _ in stats], width, yerr=[h for _, h in stats], capsize=3,
               label=variant or metric)  # fmt: skip
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_xlabel(category)
    ax.set_ylabel(f"final {metric} (mean, 95% interval over seeds)")
    if len(variants) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return fig


def maps_by_category(
    trials: list[TrialView], embeddings: dict[str, dict[str, np.ndarray]]
) -> Figure | None:
    """2-D maps of both modalities: one row per category, one column per value of the other
    settings, each from the trial with the lowest seed that saved its embeddings."""
    done = [t for t in trials if t.status == "completed" and t.name in embeddings]
    category = categorical_setting(done)
    if category is None:
        return None
    others = [p for p in settings_of(done) if p != category]
    picked: dict[tuple[str, str], TrialView] = {}
    for t in sorted(done, key=_seeds):
        picked.setdefault((format_value(t.varied[category]), _label(t, others)), t)
    rows = list(dict.fromkeys(r for r, _ in picked))
    cols = list(dict.fromkeys(c for _, c in picked))
    fig = Figure(figsize=(3.4 * len(cols), 3.2 * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), squeeze=False))
    for (r, c), t in picked.items():
        ax = axes[rows.index(r), cols.index(c)]
        draw_modality_map(ax, f"{r}  {c}".strip(), embeddings[t.name])
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_axis_off()
    return fig


def _interval_or_gap(values: list[float]) -> tuple[float, float]:
    """A category the variant never ran in is left as an empty slot, not a zero bar."""
    return interval(values) if values else (float("nan"), 0.0)


def _label(trial: TrialView, paths: list[str]) -> str:
    return " ".join(f"{p.rsplit('.', 1)[-1]}={format_value(trial.varied[p])}" for p in paths)


def _seeds(trial: TrialView) -> tuple[int, ...]:
    return tuple(int(trial.varied.get(p) or 0) for p in SEED_PATHS)
