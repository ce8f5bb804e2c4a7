"""The HTTP request behind each decision, so that an access-log line leads to its decisions and back.

Adds ``decisions.http_request_id`` (nullable: rows logged before this revision have none) and two indexes
for the operator's trace, which looks an id up across tenants: one on the new column, one on
``request_id`` alone (the unique index leads with the tenant, so it cannot serve that lookup).

Plain ``ALTER TABLE`` on both databases, no batch mode: SQLite adds and (from 3.35) drops a column in
place, while a batch rebuild drops and recreates ``decisions``, and with foreign keys on, dropping it
would cascade-delete every feedback row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-05-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HTTP_INDEX = "ix_decisions_http_request_id"
_REQUEST_INDEX = "ix_decisions_request_id"


def upgrade() -> None:
    op.add_column("decisions", sa.Column("http_request_id", sa.String(), nullable=True))
    op.create_index(_HTTP_INDEX, "decisions", ["http_request_id"])
    op.create_index(_REQUEST_INDEX, "decisions", ["request_id"])


def downgrade() -> None:
    op.drop_index(_REQUEST_INDEX, table_name="decisions")
    op.drop_index(_HTTP_INDEX, table_name="decisions")
    op.drop_column("decisions", "http_request_id")
