"""The store's tables, as SQLAlchemy Core metadata.

The schema itself is created by the Alembic migrations (``migrations/versions``); this metadata is what the
queries are written against, and a test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

VERSION_TABLE = "deskpilot_store_version"
"""Alembic's version table, named so that it cannot collide with MLflow's ``alembic_version`` when an
operator points both at one database."""

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no zone and PostgreSQL answers in the session's zone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store only takes timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


QUEUED = "route = 'human' OR review_sample"
"""Which decisions are in an agent's queue: routed to a person, or auto-routed and sampled for review. The
queue's query repeats this exact text so that both databases use the partial indexes built on it (0008)."""

# Sqlite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

decisions = sa.Table(
    "decisions",
    metadata,
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
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("http_request_id", sa.String(), nullable=True),
    sa.Column("review_sample", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("channel", sa.String(), nullable=True),
    sa.UniqueConstraint("tenant", "request_id"),
    sa.Index(None, "tenant", "created_at"),
    sa.Index(None, "http_request_id"),
    sa.Index(None, "request_id"),
    sa.Index(None, "created_at"),
    sa.Index(None, "ticket_id"),
    sa.Index(
        "ix_decisions_queue",
        "tenant",
        "created_at",
        "id",
        "request_id",  # covered: the queue's filters are checked in the index (0008)
        "channel",
        "confidence",
        sqlite_where=sa.text(QUEUED),
        postgresql_where=sa.text(QUEUED),
    ),
    sa.Index(
        "ix_decisions_queue_intent",
        "tenant",
        "intent",
        "created_at",
        "id",
        "request_id",
        "channel",
        "confidence",
        sqlite_where=sa.text(QUEUED),
        postgresql_where=sa.text(QUEUED),
    ),
)
"""One row per triage decision. ``request_id`` is the decision's own id (the API's ``request_id``, the
feedback key); ``http_request_id`` is the HTTP request that asked for it (the access log's ``request_id``),
NULL for decisions logged before migration 0004. Both are indexed on their own for the operator's trace,
which looks an id up across tenants; ``created_at`` and ``ticket_id`` are indexed for retention and erasure
(migration 0005). ``review_sample`` marks auto-routed decisions sampled for a person's review (0006);
``channel`` is the channel the caller named, and the two partial ``queue`` indexes hold only the rows of the
agents' queue (0008)."""

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("correct_intent", sa.String(), nullable=False),
    sa.Column("predicted_intent", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "request_id"),
    sa.ForeignKeyConstraint(
        ["tenant", "request_id"],
        ["decisions.tenant", "decisions.request_id"],
        ondelete="CASCADE",
    ),
    sa.Index(None, "tenant", "created_at"),
)

shadow_decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("model_name", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("intent", sa.String(), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=False),
    sa.Column("route", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "request_id", "model_version"),
    sa.Index(None, "model_name", "model_version", "created_at"),
    sa.Index(None, "created_at"),
)
"""What a challenger in shadow answered, one row per (tenant, request, version). No foreign key to
``decisions``: the two are written by separate buffered writers, so a shadow row may land first; the report
joins them on (tenant, request_id)."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("target", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("prev_hash", sa.CHAR(64), nullable=False),
    sa.Column("hash", sa.CHAR(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("mac", sa.CHAR(64), nullable=True),
    # One entry per position and one successor per entry: a race fails on these instead of forking.
    sa.UniqueConstraint("seq"),
    sa.UniqueConstraint("prev_hash"),
)
"""The audit chain (see :mod:`deskpilot.store.audit`); the database refuses UPDATE, DELETE and TRUNCATE
on it through triggers that migration 0002 creates, and the service's role may only INSERT and SELECT
(:func:`deskpilot.store.migrate.grant_runtime`). ``key_id`` and ``mac`` (migration 0005) are NULL for
entries written before audit keys existed."""

monitor_runs = sa.Table(
    "monitor_runs",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=False),
    sa.Column("since", UtcDateTime(), nullable=False),
    sa.Column("until", UtcDateTime(), nullable=False),
    sa.Column("tenant", sa.String(), nullable=True),
    sa.Column("model_name", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("decisions", sa.Integer(), nullable=False),
    sa.Column("fired", sa.Boolean(), nullable=False),
    sa.Column("result", sa.JSON(), nullable=False),
    sa.Index(None, "until"),
)
"""One row per monitor run (migration 0006): the range and tenant it read (``tenant`` NULL: every tenant),
the model it compared with, whether any signal fired, and the whole result as JSON. Aggregates only: no
ticket text, so retention leaves it alone."""

kb_items = sa.Table(
    "kb_items",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("item_id", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("title", sa.Text(), nullable=True),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("intents", sa.JSON(), nullable=False),
    sa.Column("reply", sa.Text(), nullable=True),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "item_id"),
)
"""The copilot's knowledge sources (migration 0007): resolved tickets and help-center articles, PII-redacted,
one row per (tenant, item id); importing an item again replaces it. The retrieval index is rebuilt from
these rows and nothing else."""

suggestions = sa.Table(
    "suggestions",
    metadata,
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
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "suggestion_id"),
    sa.Index(None, "tenant", "created_at"),
    sa.Index(None, "created_at"),
    sa.Index(None, "tenant", "request_id"),
)
"""One row per reply suggestion (migration 0007): what was drafted (redacted, as shown to the agent), from
which sources, by which provider, model and prompt version, at what cost; ``draft`` is NULL when the copilot
declined, with its ``reason``."""

suggestion_feedback = sa.Table(
    "suggestion_feedback",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("suggestion_id", sa.String(), nullable=False),
    sa.Column("verdict", sa.String(), nullable=False),
    sa.Column("edit_distance", sa.Integer(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "suggestion_id"),
    sa.ForeignKeyConstraint(
        ["tenant", "suggestion_id"],
        ["suggestions.tenant", "suggestions.suggestion_id"],
        ondelete="CASCADE",
    ),
    sa.Index(None, "tenant", "created_at"),
)
"""An agent's verdict on a suggestion (``accepted``, ``edited`` with the edit distance, ``rejected``); one per
suggestion, posting again replaces it."""

llm_budget = sa.Table(
    "llm_budget",
    metadata,
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("period", sa.String(), nullable=False),
    sa.Column("reserved_tokens", sa.BigInteger(), nullable=False),
    sa.Column("reserved_cost", sa.Float(), nullable=False),
    sa.Column("spent_tokens", sa.BigInteger(), nullable=False),
    sa.Column("spent_cost", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "period"),
)
"""Each tenant's LLM spend per budget period (migration 0007). A call reserves its worst case with one
conditional UPDATE (spent + reserved + this call within the limit) before it is sent, and settles after, so
concurrent workers can never spend past the limit together."""

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_sha256", sa.CHAR(64), primary_key=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("key_id", sa.String(), nullable=False),
    sa.Column("role", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Index(None, "expires_at"),
)
"""One row per signed-in console browser (migration 0008): the SHA-256 of its session token (the token itself
is only in the browser's cookie), the key it signed in with, and when it expires. Signing out deletes it."""

DATA_TABLES = (decisions, feedback, shadow_decisions, kb_items, suggestions, suggestion_feedback)
"""The tables retention and erasure delete from (never ``audit_log``), and the runtime role may write."""
