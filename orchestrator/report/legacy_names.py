"""Stored trials read under today's metric names.

Until the metric names said what they count (issue 20), the trainer reported on digits and
image_folder, whose retrieval then counted any item of the query's class, that class-level
recall as `recall_at_1_*`; it is `class_recall_at_1_*` now, and `recall_at_1_*` counts the
query's own pair. On paired_features with labels (no prompts) `zero_shot_acc` was the
nearest-centroid accuracy, `centroid_acc` now, and its shift metrics `shift_*_centroid_*`.
Trials stored before keep their rows; `results`, `compare` and `report` read them through the
one table below (docs/metrics.md shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store's models import SQLAlchemy, which `results --help` does not need
    from orchestrator.store.views import TrialView

_CLASS_RECALL = {
    "recall_at_1_a2b": "class_recall_at_1_a2b",
    "recall_at_1_b2a": "class_recall_at_1_b2a",
}
# data.name -> {old name: new name}, for trials recorded before the rename.
RENAMED: dict[str, dict[str, str]] = {
    "digits": _CLASS_RECALL,
    "image_folder": _CLASS_RECALL,
    "paired_features": {
        "zero_shot_acc": "centroid_acc",
        "shift_best_zero_shot_acc": "shift_best_centroid_acc",
        "shift_zero_shot_gain": "shift_centroid_gain",
        "shift_heldout_zero_shot_acc": "shift_heldout_centroid_acc",
    },
}
# data.name -> names kept whose old count was looser than today's, with what it counted.
LOOSER: dict[str, tuple[tuple[str, ...], str]] = {
    "shapes": (
        ("recall_at_1_a2b", "recall_at_1_b2a"),
        "any caption of the same description, in either of its wordings",
    ),
}
# Every trial recorded since the rename whose data has classes holds one of these.
SINCE_RENAME = ("class_recall_at_1_a2b", "centroid_acc")
DOCS = "docs/metrics.md"


@dataclass(frozen=True)
class TodaysNames:
    """Trials with their metrics under today's names, and what a reader should be told."""

    trials: list[TrialView]
    notes: tuple[str, ...] = ()


def todays_names(trials: Sequence[TrialView]) -> TodaysNames:
    """`trials` with each old name of a trial recorded before the rename read as its new name."""
    out: list[TrialView] = []
    renamed: dict[str, str] = {}
    looser: set[str] = set()  # data sets
    for t in trials:
        data = t.config.get("data")
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or any(m in t.metrics for m in SINCE_RENAME):
            out.append(t)
            continue
        table = {old: new for old, new in RENAMED.get(name, {}).items() if old in t.metrics}
        renamed |= table
        if any(m in t.metrics for m in LOOSER.get(name, ((), ""))[0]):
            looser.add(name)
        metrics = {table.get(k, k): v for k, v in t.metrics.items()}
        out.append(replace(t, metrics=metrics) if table else t)
    return TodaysNames(out, _notes(renamed, looser))


def _notes(renamed: dict[str, str], looser: set[str]) -> tuple[str, ...]:
    notes = []
    if renamed:
        pairs = ", ".join(f"{old} as {new}" for old, new in sorted(renamed.items()))
        notes.append(
            f"trials recorded before the metric names said what they count are read with {pairs}"
            f" (see {DOCS})"
        )
    for data in sorted(looser):
        names, counted = LOOSER[data]
        notes.append(
            f"{' and '.join(names)} of {data} trials recorded before the rename counted {counted}"
            f" (see {DOCS})"
        )
    return tuple(notes)


def metric_held(name: str, trials: Sequence[TrialView]) -> tuple[str, str | None]:
    """The name `trials` hold the metric `name` under: `name` itself, or where none holds it
    but some hold its new name (an old name asked of trials read by `todays_names`), that one,
    with a note saying so."""
    if any(name in t.metrics for t in trials):
        return name, None
    for table in RENAMED.values():
        new = table.get(name)
        if new is not None and any(new in t.metrics for t in trials):
            return new, f"{name}: read as {new}, the name these trials' values have now ({DOCS})"
    return name, None


def stored_name(trial: TrialView, name: str) -> str:
    """The name under which `trial`, as stored, keeps the rows of today's metric `name`: its
    old name for a trial recorded before the rename, else `name`."""
    data = trial.config.get("data")
    data_name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(data_name, str) or any(m in trial.metrics for m in SINCE_RENAME):
        return name
    for old, new in RENAMED.get(data_name, {}).items():
        if new == name and old in trial.metrics:
            return old
    return name
