"""The initial schema: sweeps, trials, metric series and sweep leases.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("trainer", sa.String(64), nullable=False),
        sa.Column("spec_text", sa.Text, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        sa.Column("metric_mode", sa.String(8), nullable=False),
        sa.Column("mlflow_experiment_id", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "sweep_id", sa.Integer, sa.ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("varied", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("host", sa.String(255)),
        sa.Column("node_id", sa.String(128)),
        sa.Column("started_at", TZ),
        sa.Column("ended_at", TZ),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("last_step", sa.Integer),
        sa.Column("checkpoint_path", sa.Text),
        sa.Column("resumed_from_step", sa.Integer),
        sa.Column("mlflow_last_step", sa.Integer),
        sa.Column("final_metrics", sa.JSON),
        sa.UniqueConstraint("sweep_id", "key", name="uq_trials_sweep_key"),
    )
    op.create_index("ix_trials_sweep_id", "trials", ["sweep_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "trial_id", sa.Integer, sa.ForeignKey("trials.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_trial_name_step", "metrics", ["trial_id", "name", "step"])
    op.create_table(
        "leases",
        sa.Column("sweep_name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "metrics", "trials", "sweeps"):
        op.drop_table(table)
