"""The best trials of a sweep: by its metric, or with several objectives the Pareto front, the
completed trials no other completed trial beats on every objective at once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.spec_file import parse_spec_yaml

if TYPE_CHECKING:
    from orchestrator.store.views import TrialView

Objective = tuple[str, str]  # (metric, "min" | "max")


def pareto_front(trials: Sequence[TrialView], objectives: Sequence[Objective]) -> list[TrialView]:
    """The completed trials with every objective finite that no other such trial dominates
    (at least as good on every objective and better on one), in the trials' order. With one
    objective: the best trial (all of them on a tie)."""
    scored = [(t, signed(t, objectives)) for t in trials if t.status == "completed"]
    points = [(t, p) for t, p in scored if p is not None]
    return [t for t, p in points if not any(_dominates(q, p) for _, q in points)]


def signed(trial: TrialView, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """The trial's objectives as values to minimise; None when one is missing or not finite."""
    values = [trial.metrics.get(name, math.nan) for name, _ in objectives]
    if not all(math.isfinite(v) for v in values):
        return None
    return tuple(
        v if mode == "min" else -v for v, (_, mode) in zip(values, objectives, strict=True)
    )


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def objectives_of(spec_text: str, fallback: Objective) -> list[Objective]:
    """A stored spec's objectives: its `metric`, one mapping or a list of them."""
    metric = parse_spec_yaml(spec_text, Path("<stored spec>")).get("metric")
    items = metric if isinstance(metric, list) else [metric]
    found = [
        (str(m.get("name", "loss")), str(m.get("mode", "min")))
        for m in items
        if isinstance(m, dict)
    ]
    return found or [fallback]
