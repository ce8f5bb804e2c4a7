"""The console: the channel a ticket came through, the agent's queue, and sign-in sessions.

``decisions.channel`` is the channel a caller names (``email``, ``chat``, ...), NULL when it named none and
for every decision logged before. The queue of an agent (decisions routed to a person, and the audit sample of
auto routes) is read newest first through two partial indexes that hold only those rows, so that a page costs
the same at a million decisions as at a thousand. ``suggestions`` gains an index on its request id (the ticket
page shows the suggestion made for a decision). ``console_sessions`` keeps one row per signed-in browser:
only the SHA-256 of the session token is stored, with the key it signed in with and when it expires.

Plain ``ALTER TABLE`` for the new column, as in 0004 to 0006.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = "route = 'human' OR review_sample"  # the exact text the queue's query repeats (store.queue)


# After the key columns, what the queue filters on, so a filter is checked in the index and only a
# matching row is read from the table (a million decisions: the channel filter 5x and a count of done
# tickets 2x faster).
COVERED = ["request_id", "channel", "confidence"]


def upgrade() -> None:
    op.add_column("decisions", sa.Column("channel", sa.String(), nullable=True))
    op.create_index(
        "ix_decisions_queue",
        "decisions",
        ["tenant", "created_at", "id", *COVERED],
        sqlite_where=sa.text(QUEUED),
        postgresql_where=sa.text(QUEUED),
    )
    op.create_index(
        "ix_decisions_queue_intent",
        "decisions",
        ["tenant", "intent", "created_at", "id", *COVERED],
        sqlite_where=sa.text(QUEUED),
        postgresql_where=sa.text(QUEUED),
    )
    op.create_index("ix_suggestions_tenant_request_id", "suggestions", ["tenant", "request_id"])
    op.create_table(
        "console_sessions",
        sa.Column("token_sha256", sa.CHAR(64), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_suggestions_tenant_request_id", table_name="suggestions")
    op.drop_index("ix_decisions_queue_intent", table_name="decisions")
    op.drop_index("ix_decisions_queue", table_name="decisions")
    op.drop_column("decisions", "channel")
