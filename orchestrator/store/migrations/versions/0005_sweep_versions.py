"""Sweeps keep the versions of their spec, a lease can carry a request to cancel its sweep, and
a trial of an Optuna search keeps its sampler's state.

Every sweep already stored becomes version 1 of itself, with its last spec and every trial it
holds (they may mix edits of the spec made before versions existed: nothing can tell them apart
now, so they stay together, as they were read before).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = op.create_table(
        "sweep_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "sweep_id",
            sa.Integer,
            sa.ForeignKey("sweeps.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("spec_text", sa.Text, nullable=False),
        sa.Column("overrides", sa.JSON, nullable=True),
        sa.Column("keys", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sweep_id", "number", name="uq_sweep_versions_number"),
    )
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(255)))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("search_state", sa.JSON, nullable=True))
    _first_versions(versions)


def _first_versions(versions: sa.Table) -> None:
    bind = op.get_bind()
    sweeps = bind.execute(sa.text("SELECT id, spec_hash, spec_text, overrides FROM sweeps"))
    rows = []
    for sweep_id, spec_hash, spec_text, overrides in sweeps.fetchall():
        keys = bind.execute(
            sa.text("SELECT key FROM trials WHERE sweep_id = :id ORDER BY position"),
            {"id": sweep_id},
        )
        rows.append(
            {
                "sweep_id": sweep_id,
                "number": 1,
                "spec_hash": spec_hash,
                "spec_text": spec_text,
                "overrides": overrides,
                "keys": [k for (k,) in keys],
                "created_at": datetime.now(UTC),
            }
        )
    if rows:
        op.bulk_insert(versions, rows)


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("search_state")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("cancel_requested_by")
        batch.drop_column("cancel_requested_at")
    op.drop_table("sweep_versions")
