"""What the results store hands out and takes in: plain frozen records, never ORM objects, so
no caller can write to the database by accident or touch a closed session."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from orchestrator.store.models import SweepRow, TrialRow

# `pruned`: stopped early by the sweep's scheduler; neither completed nor failed, never rerun.
TERMINAL = ("completed", "failed", "stopped", "pruned")


@dataclass(frozen=True)
class NewTrial:
    key: str
    name: str
    position: int
    config: dict[str, Any]
    varied: dict[str, Any]


@dataclass(frozen=True)
class TrialView:
    key: str
    name: str
    status: str
    attempts: int
    config: dict[str, Any]
    varied: dict[str, Any]
    metrics: dict[str, float]
    error: str | None
    host: str | None
    node_id: str | None
    mlflow_run_id: str | None
    last_step: int | None
    resumed_from_step: int | None
    mlflow_last_step: int | None
    checkpoint_path: str | None
    started_at: datetime | None
    ended_at: datetime | None
    # Final metrics that were not finite, by name, and how ("nan", "inf", "-inf"); `metrics`
    # leaves them out.
    non_finite: dict[str, str] = field(default_factory=dict)
    search_state: dict[str, Any] | None = None  # search: optuna (models.TrialRow)


@dataclass(frozen=True)
class SweepView:
    name: str
    metric_name: str
    metric_mode: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    created_at: datetime


def sweep_view(row: SweepRow) -> SweepView:
    return SweepView(
        name=row.name,
        metric_name=row.metric_name,
        metric_mode=row.metric_mode,
        mlflow_experiment_id=row.mlflow_experiment_id,
        mlflow_run_id=row.mlflow_run_id,
        created_at=row.created_at,
    )


# TrialView's fields in order, as columns of the trials table (its metrics are final_metrics):
# reading plain columns rather than ORM objects keeps a large sweep's listing cheap.
VIEW_COLUMNS = [
    getattr(TrialRow, "final_metrics" if f.name == "metrics" else f.name) for f in fields(TrialView)
]
_VIEW_FIELDS = [f.name for f in fields(TrialView)]


def trial_view(values: tuple[Any, ...]) -> TrialView:
    """The view of one row of VIEW_COLUMNS."""
    data = dict(zip(_VIEW_FIELDS, values, strict=True))
    data["metrics"] = {k: v for k, v in (data["metrics"] or {}).items() if v is not None}
    data["non_finite"] = dict(data["non_finite"] or {})
    return TrialView(**data)


def new_trial_row(sweep_id: int, t: NewTrial) -> TrialRow:
    """A registered trial's first row: pending, no attempt yet."""
    return TrialRow(
        sweep_id=sweep_id,
        key=t.key,
        name=t.name,
        position=t.position,
        config=t.config,
        varied=t.varied,
        status="pending",
        attempts=0,
    )
