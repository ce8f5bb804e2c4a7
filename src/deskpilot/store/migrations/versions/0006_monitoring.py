"""The monitor's history, and the audit sample of auto-routed decisions.

``decisions.review_sample`` marks the auto-routed decisions sampled for a person's review, so that the
accuracy of auto routes can be measured from their verdicts without the bias of reviewing only the tickets
the model handed to a person (false for every decision logged before). ``monitor_runs`` keeps one row per
run of the monitor: its range, the model it watched, whether a signal fired, and every signal as JSON.

Plain ``ALTER TABLE`` for the new column, as in 0004 and 0005 (a batch rebuild of ``decisions`` would
cascade-delete feedback).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "decisions",
        sa.Column("review_sample", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(), nullable=True),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("fired", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_runs"),
    )
    op.create_index("ix_monitor_runs_until", "monitor_runs", ["until"])


def downgrade() -> None:
    op.drop_index("ix_monitor_runs_until", table_name="monitor_runs")
    op.drop_table("monitor_runs")
    op.drop_column("decisions", "review_sample")
