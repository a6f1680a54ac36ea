"""SQLAlchemy 2 typed ORM models of the results store: sweeps, trials and metric series."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SweepRow(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    trainer: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    metric_name: Mapped[str] = mapped_column(String(64))
    metric_mode: Mapped[str] = mapped_column(String(8))
    # The `--set path=value` overrides of base settings the sweep was submitted with.
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    trials: Mapped[list[TrialRow]] = relationship(back_populates="sweep")


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("sweep_id", "key", name="uq_trials_sweep_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    varied: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    node_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    last_step: Mapped[int | None] = mapped_column(Integer)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    # The checkpoint step the latest attempt went on from; None when it started from scratch.
    resumed_from_step: Mapped[int | None] = mapped_column(Integer)
    # The last step whose metrics reached MLflow; `orchestrator sync` logs what came after.
    mlflow_last_step: Mapped[int | None] = mapped_column(Integer)
    # A non-finite final value is JSON null there (PostgreSQL's JSON has no NaN or Infinity),
    # and its kind ("nan", "inf", "-inf") is kept here by name.
    final_metrics: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    non_finite: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # search: optuna: what the sampler keeps with the trial (its system attributes: NSGA-II's
    # generation, CMA-ES's state), so that a study rebuilt from the store goes on as it was.
    search_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    sweep: Mapped[SweepRow] = relationship(back_populates="trials")


class LeaseRow(Base):
    """Who is running a sweep now: a second `submit` of the same sweep refuses while the
    holder's heartbeat is fresh, and takes over a lease whose holder died.

    The row outlives its holders: a release only sets `released_at`, so `epoch`, which every
    acquisition increments, never goes backwards, and a driver's writes carry the epoch they
    were made under (lease.py)."""

    __tablename__ = "leases"

    sweep_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    epoch: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # `orchestrator cancel`: asked by whom (host and pid) and when; every acquisition clears it.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255))


class SweepVersionRow(Base):
    """Each spec a sweep was submitted with that changed more than adding trials starts a new
    version; `keys` are the trials of the version (a trial may belong to several: its row is
    shared, since a content key names one experiment). Readers show the latest by default."""

    __tablename__ = "sweep_versions"
    __table_args__ = (UniqueConstraint("sweep_id", "number", name="uq_sweep_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    keys: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_trial_name_step", "trial_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
