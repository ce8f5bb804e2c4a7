"""Decisions and feedback, both keyed by (tenant, request id).

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=True),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("intent", sa.String(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("alternatives", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("tenant", "request_id", name="uq_decisions_tenant_request_id"),
    )
    op.create_index("ix_decisions_tenant_created_at", "decisions", ["tenant", "created_at"])
    op.create_table(
        "feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("correct_intent", sa.String(), nullable=False),
        sa.Column("predicted_intent", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("tenant", "request_id", name="uq_feedback_tenant_request_id"),
        sa.ForeignKeyConstraint(
            ["tenant", "request_id"],
            ["decisions.tenant", "decisions.request_id"],
            name="fk_feedback_tenant_request_id_decisions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_feedback_tenant_created_at", "feedback", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_tenant_created_at", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_decisions_tenant_created_at", table_name="decisions")
    op.drop_table("decisions")
