"""Keyed audit entries, and the indexes retention and erasure read through.

``audit_log`` gains ``key_id`` and ``mac`` (NULL for the entries written before: they stay valid as
*unkeyed* entries at the start of the chain). ``decisions`` gets indexes on ``created_at`` (retention
deletes by age across tenants) and ``ticket_id`` (erasure finds one ticket's decisions), and
``shadow_decisions`` one on ``created_at``.

Plain ``ALTER TABLE`` on both databases, as in 0004: a batch rebuild of ``decisions`` would cascade-delete
feedback, and one of ``audit_log`` would need its append-only triggers dropped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_decisions_created_at", "decisions", "created_at"),
    ("ix_decisions_ticket_id", "decisions", "ticket_id"),
    ("ix_shadow_decisions_created_at", "shadow_decisions", "created_at"),
)


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("key_id", sa.String(16), nullable=True))
    op.add_column("audit_log", sa.Column("mac", sa.CHAR(64), nullable=True))
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _column in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_column("audit_log", "mac")
    op.drop_column("audit_log", "key_id")
