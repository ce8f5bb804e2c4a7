"""The copilot: knowledge sources, reply suggestions with the agents' verdicts, and the LLM budget ledger.

``kb_items`` holds the PII-redacted resolved tickets and help-center articles the retrieval index is built
from; ``suggestions`` one row per reply suggestion and ``suggestion_feedback`` the agent's verdict on it;
``llm_budget`` each tenant's reserved and spent LLM tokens and money per period.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kb_items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("intents", sa.JSON(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_items"),
        sa.UniqueConstraint("tenant", "item_id", name="uq_kb_items_tenant_item_id"),
    )
    op.create_table(
        "suggestions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("suggestion_id", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("intent", sa.String(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("draft", sa.Text(), nullable=True),
        sa.Column("citations", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("prompt_version", sa.String(), nullable=False),
        sa.Column("index_version", sa.Integer(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suggestions"),
        sa.UniqueConstraint("tenant", "suggestion_id", name="uq_suggestions_tenant_suggestion_id"),
    )
    op.create_index("ix_suggestions_tenant_created_at", "suggestions", ["tenant", "created_at"])
    op.create_index("ix_suggestions_created_at", "suggestions", ["created_at"])
    op.create_table(
        "suggestion_feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("suggestion_id", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("edit_distance", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suggestion_feedback"),
        sa.UniqueConstraint("tenant", "suggestion_id", name="uq_suggestion_feedback_tenant_suggestion_id"),
        sa.ForeignKeyConstraint(
            ["tenant", "suggestion_id"],
            ["suggestions.tenant", "suggestions.suggestion_id"],
            name="fk_suggestion_feedback_tenant_suggestion_id_suggestions",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_suggestion_feedback_tenant_created_at", "suggestion_feedback", ["tenant", "created_at"]
    )
    op.create_table(
        "llm_budget",
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reserved_cost", sa.Float(), nullable=False),
        sa.Column("spent_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spent_cost", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "period", name="pk_llm_budget"),
    )


def downgrade() -> None:
    op.drop_table("llm_budget")
    op.drop_index("ix_suggestion_feedback_tenant_created_at", table_name="suggestion_feedback")
    op.drop_table("suggestion_feedback")
    op.drop_index("ix_suggestions_created_at", table_name="suggestions")
    op.drop_index("ix_suggestions_tenant_created_at", table_name="suggestions")
    op.drop_table("suggestions")
    op.drop_table("kb_items")
