"""Shadow decisions: what a challenger in shadow answered, for the agreement report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-04-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_INDEX = "ix_shadow_decisions_model_name_model_version_created_at"


def upgrade() -> None:
    op.create_table(
        "shadow_decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("intent", sa.String(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_decisions"),
        sa.UniqueConstraint(
            "tenant",
            "request_id",
            "model_version",
            name="uq_shadow_decisions_tenant_request_id_model_version",
        ),
    )
    op.create_index(_INDEX, "shadow_decisions", ["model_name", "model_version", "created_at"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="shadow_decisions")
    op.drop_table("shadow_decisions")
