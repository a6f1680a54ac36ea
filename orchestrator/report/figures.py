"""The figures of a sweep report, each a function of stored trials returning a matplotlib figure
(or None when the sweep has nothing for it). Figures are built without pyplot, so they render
with the Agg canvas, headless, and no global figure state is involved."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from orchestrator.plan import SEED_PATHS, format_value
from orchestrator.report.intervals import mean_interval
from orchestrator.store.views import TrialView

Series = Callable[[str, str], list[tuple[int, float]]]  # (trial key, metric) -> (step, value)


def settings_of(trials: list[TrialView]) -> list[str]:
    """The swept paths that are settings (not seeds), in spec order."""
    paths = [p for t in trials[:1] for p in t.varied if p not in SEED_PATHS]
    return [p for p in paths if len({format_value(t.varied.get(p)) for t in trials}) > 1]


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (0 for a single value): `compare`'s rule."""
    mean, _, half = mean_interval(values)
    return mean, half


def metric_versus_setting(trials: list[TrialView], metric: str) -> Figure | None:
    """Final `metric` against the first numeric setting, one line per value of the others, with
    95% intervals over seeds (gap versus tau, cone cosine versus depth per activation, ...)."""
    done = [t for t in trials if t.status == "completed" and metric in t.metrics]
    settings = settings_of(done)
    numeric = [p for p in settings if all(is_number(t.varied.get(p)) for t in done)]
    if not done or not numeric:
        return None
    x_path = numeric[0]
    others = [p for p in settings if p != x_path]
    lines: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in done:
        label = " ".join(f"{p.rsplit('.', 1)[-1]}={format_value(t.varied[p])}" for p in others)
        lines[label][float(t.varied[x_path])].append(t.metrics[metric])
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, points in sorted(lines.items()):
        xs = sorted(points)
        stats = [interval(points[x]) for x in xs]
        ax.errorbar(
            xs,
            [m for m, _ in stats],
            yerr=[h for _, h in stats],
            marker="o",
            capsize=3,
            label=label or metric,
        )
    if min(float(t.varied[x_path]) for t in done) > 0 and _spread(done, x_path) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x_path)
    ax.set_ylabel(f"final {metric} (mean, 95% interval over seeds)")
    if len(lines) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def series_per_trial(
    trials: list[TrialView], series: Series, metric: str, x_metric: str | None = None
) -> Figure | None:
    """Each trial's `metric` against its step (or against another reported metric, e.g. the
    landscape's loss against gap_norm)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    drawn = 0
    for t in trials:
        ys = dict(series(t.key, metric))
        if len(ys) < 2:
            continue
        xs = dict(series(t.key, x_metric)) if x_metric else {s: float(s) for s in ys}
        steps = sorted(s for s in ys if s in xs)
        ax.plot([xs[s] for s in steps], [ys[s] for s in steps], label=t.name, lw=1.2)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel(x_metric or "step")
    ax.set_ylabel(metric)
    if drawn <= 24:
        ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return fig


# The shift curve's accuracy: by class prompts, or by class means where the data has none.
ACCURACIES = {"zero_shot_acc": "zero-shot", "centroid_acc": "nearest-centroid"}


def shift_figure(curves: dict[str, list[dict[str, float]]]) -> Figure | None:
    """Zero-shot (or, without prompts, nearest-centroid) accuracy and loss versus the shift
    lambda, one line per trial."""
    names = {n for rows in curves.values() if rows for n in ACCURACIES if n in rows[0]}
    if not names:
        return None
    fig = Figure(figsize=(10, 4))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for name, rows in curves.items():
        lams = [r["lambda"] for r in rows]
        accuracy = [next((r[n] for n in ACCURACIES if n in r), math.nan) for r in rows]
        colour = acc_ax.plot(lams, accuracy, marker=".", label=name)[0].get_color()
        if "worst_group_acc" in rows[0]:
            worst = [r["worst_group_acc"] for r in rows]
            acc_ax.plot(lams, worst, ls="--", lw=0.8, color=colour)
        loss_ax.plot(lams, [r["loss"] for r in rows], marker=".", label=name, color=colour)
    kind = " or ".join(ACCURACIES[n] for n in ACCURACIES if n in names)
    acc_ax.set_ylabel(f"{kind} accuracy (dashed: worst group)")
    loss_ax.set_ylabel("loss")
    for ax in (acc_ax, loss_ax):
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("shift lambda (> 0 closes the gap)")
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    return fig


def centroid_similarity(embeddings: dict[str, dict[str, np.ndarray]]) -> Figure | None:
    """Cosine between the cone centroids of tower a across trials (Fig. 2c: each init seed
    draws its own cone, so off-diagonal values are well below 1)."""
    if len(embeddings) < 2:
        return None
    centroids = np.stack([arrays["a"].mean(axis=0) for arrays in embeddings.values()])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sim = centroids @ centroids.T
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    image = ax.imshow(sim, vmin=-1, vmax=1, cmap="coolwarm")
    fig.colorbar(image, ax=ax, label="cosine of tower-a centroids")
    ax.set_xlabel("trial")
    ax.set_ylabel("trial")
    return fig


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spread(trials: list[TrialView], path: str) -> float:
    values = [float(t.varied[path]) for t in trials]
    return max(values) / min(values)
