"""The Pareto front of a sweep with several objectives, as the report draws it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from orchestrator.pareto import Objective, pareto_front, signed

if TYPE_CHECKING:
    from orchestrator.store.views import TrialView


def pareto_figure(trials: Sequence[TrialView], objectives: Sequence[Objective]) -> Figure | None:
    """The first two objectives of every completed trial, the front in colour and joined, the
    dominated ones grey; None for a sweep with one objective."""
    if len(objectives) < 2:
        return None
    (x_name, x_mode), (y_name, y_mode) = objectives[0], objectives[1]
    front = {t.key for t in pareto_front(trials, objectives)}
    done = [t for t in trials if t.status == "completed" and signed(t, objectives) is not None]
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    grey = [t for t in done if t.key not in front]
    ax.scatter([t.metrics[x_name] for t in grey], [t.metrics[y_name] for t in grey],
               color="0.75", label="dominated")  # fmt: skip
    best = sorted((t for t in done if t.key in front), key=lambda t: t.metrics[x_name])
    ax.plot([t.metrics[x_name] for t in best], [t.metrics[y_name] for t in best],
            marker="o", color="tab:red", label="Pareto front")  # fmt: skip
    ax.set_xlabel(f"{x_name} ({x_mode})")
    ax.set_ylabel(f"{y_name} ({y_mode})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
