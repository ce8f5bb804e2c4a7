"""The agents' queue: decisions routed to a person and the audit sample of auto routes, newest first.

One page is one keyset read through the partial indexes of migration 0008, which hold only queued rows:
``ix_decisions_queue`` (tenant, created_at, id) and, for an intent filter, ``ix_decisions_queue_intent``
(tenant, intent, created_at, id). A database uses a partial index only when the query repeats its condition,
so every read here carries :data:`~deskpilot.store.tables.QUEUED` as literal SQL, never as bound values.
Paging goes by position (created_at, id), not by offset: page 1,000 costs what page 1 costs, and a ticket
arriving meanwhile never shifts a page. Whether a person has given a verdict is an (indexed) EXISTS on the
feedback of the same (tenant, request id); the verdict itself is read only for the rows of the page.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deskpilot.domain import Route
from deskpilot.store.records import DecisionRecord, FeedbackRecord
from deskpilot.store.sql_rows import decision_from_row, feedback_from_row
from deskpilot.store.tables import QUEUED, decisions, feedback

QueueState = Literal["open", "done", "all"]
QueueKind = Literal["all", "human", "sampled"]
STATES: tuple[QueueState, ...] = ("open", "done", "all")
KINDS: tuple[QueueKind, ...] = ("all", "human", "sampled")
MAX_QUEUE_PAGE = 500
COUNT_CAP = 10_000
"""Counting stops past this many rows: the exact size of a large queue is not worth a full scan."""

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,80}")
_ID = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A row's position in the queue, (created_at, id); :meth:`encode` makes it an opaque URL token."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor a token encodes; ValueError for anything :meth:`encode` did not make."""
        if not _TOKEN.fullmatch(token):
            raise ValueError("not a queue cursor")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("not a queue cursor") from exc
        moment, _, ident = raw.partition("|")
        try:
            at = datetime.fromisoformat(moment)
        except ValueError as exc:
            raise ValueError("not a queue cursor") from exc
        if at.tzinfo is None or not _ID.fullmatch(ident) or int(ident) >= 2**63:
            raise ValueError("not a queue cursor")
        return cls(at.astimezone(UTC), int(ident))


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueQuery:
    """Which queued decisions to show: every filter is optional; ``after`` continues from a cursor.

    ``state``: ``open`` (no verdict yet), ``done`` or ``all``; ``kind``: ``human`` routes, ``sampled`` auto
    routes in the audit sample, or ``all`` of both. Confidence bounds are inclusive; ``since`` is the oldest
    ``created_at`` shown (an age cutoff).
    """

    intent: str | None = None
    channel: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: datetime | None = None
    state: QueueState = "open"
    kind: QueueKind = "all"
    after: Cursor | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        for bound in (self.min_confidence, self.max_confidence):
            if bound is not None and not (math.isfinite(bound) and 0.0 <= bound <= 1.0):
                raise ValueError("confidence bounds must be between 0 and 1")
        low, high = self.min_confidence, self.max_confidence
        if low is not None and high is not None and low > high:
            raise ValueError("the minimum confidence is above the maximum")
        if self.since is not None and self.since.tzinfo is None:
            raise ValueError("since must be timezone-aware")

    def matches(self, record: DecisionRecord, verdict: str | None) -> bool:
        """The filters (not the cursor) applied to one decision in Python, for the in-memory store."""
        human = record.route is Route.HUMAN
        kind = {"all": human or record.review_sample, "human": human, "sampled": record.review_sample}
        state = self.state == "all" or (self.state == "done") == (verdict is not None)
        return (
            kind[self.kind]
            and state
            and (self.intent is None or record.intent == self.intent)
            and (self.channel is None or record.channel == self.channel)
            and (self.min_confidence is None or record.confidence >= self.min_confidence)
            and (self.max_confidence is None or record.confidence <= self.max_confidence)
            and (self.since is None or record.created_at >= self.since)
        )


@dataclass(frozen=True, slots=True)
class QueueRow:
    decision: DecisionRecord
    cursor: Cursor  # the row's own position: the queue continues after it
    verdict: str | None = None  # the intent a person confirmed or corrected, if any


@dataclass(frozen=True, slots=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: Cursor | None  # None on the last page


def check_queue_page(limit: int) -> None:
    if not 1 <= limit <= MAX_QUEUE_PAGE:
        raise ValueError(f"a queue page holds 1 to {MAX_QUEUE_PAGE} rows, got {limit}")


def page_of(rows: Iterable[QueueRow], limit: int) -> QueuePage:
    """A page from up to ``limit + 1`` rows in queue order: the extra row only says that more follow."""
    found = list(rows)
    more = len(found) > limit
    found = found[:limit]
    return QueuePage(found, found[-1].cursor if more and found else None)


def _conditions(tenant: str, query: QueueQuery) -> list[Any]:
    d, f = decisions, feedback
    # grouped: the OR must not bind to the next condition; the database still sees the index's own term
    where: list[Any] = [sa.text(f"({QUEUED})"), d.c.tenant == tenant]
    if query.kind == "human":
        where.append(d.c.route == Route.HUMAN.value)
    elif query.kind == "sampled":
        where.append(d.c.review_sample.is_(True))
    if query.intent is not None:
        where.append(d.c.intent == query.intent)
    if query.channel is not None:
        where.append(d.c.channel == query.channel)
    if query.min_confidence is not None:
        where.append(d.c.confidence >= query.min_confidence)
    if query.max_confidence is not None:
        where.append(d.c.confidence <= query.max_confidence)
    if query.since is not None:
        where.append(d.c.created_at >= query.since)
    if query.state != "all":
        judged = sa.exists().where(f.c.tenant == d.c.tenant, f.c.request_id == d.c.request_id)
        where.append(judged if query.state == "done" else ~judged)
    return where


def page_statement(tenant: str, query: QueueQuery, limit: int) -> sa.Select[Any]:
    """The SELECT of one page (``limit + 1`` rows), newest first; public so a test can EXPLAIN it."""
    d, f = decisions, feedback
    verdict = (
        sa.select(f.c.correct_intent)
        .where(f.c.tenant == d.c.tenant, f.c.request_id == d.c.request_id)
        .scalar_subquery()
        .label("verdict")
    )
    statement = sa.select(d, verdict).where(*_conditions(tenant, query))
    if query.after is not None:
        at, ident = query.after.created_at, query.after.id
        # the redundant bound makes the position a range on the index, not a filter on every row before it
        statement = statement.where(d.c.created_at <= at, sa.or_(d.c.created_at < at, d.c.id < ident))
    return statement.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit + 1)


def count_statement(tenant: str, query: QueueQuery, cap: int) -> sa.Select[Any]:
    """COUNT over at most ``cap + 1`` matching rows (the cursor is ignored: the size of the whole queue)."""
    inner: sa.Select[Any] = (
        sa.select(sa.literal_column("1")).select_from(decisions).where(*_conditions(tenant, query))
    )
    return sa.select(sa.func.count()).select_from(inner.limit(cap + 1).subquery())


def read_page(conn: Connection, tenant: str, query: QueueQuery, limit: int) -> QueuePage:
    check_queue_page(limit)
    rows = conn.execute(page_statement(tenant, query, limit)).all()
    return page_of(
        (QueueRow(decision_from_row(row), Cursor(row.created_at, row.id), row.verdict) for row in rows),
        limit,
    )


def read_count(conn: Connection, tenant: str, query: QueueQuery, cap: int = COUNT_CAP) -> int:
    """How many rows match, up to ``cap + 1`` (which means "more than ``cap``")."""
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    return int(conn.execute(count_statement(tenant, query, cap)).scalar_one())


def read_position(conn: Connection, tenant: str, request_id: str) -> Cursor | None:
    d = decisions
    row = conn.execute(
        sa.select(d.c.created_at, d.c.id).where(d.c.tenant == tenant, d.c.request_id == request_id)
    ).one_or_none()
    return None if row is None else Cursor(row.created_at, row.id)


def read_verdict(conn: Connection, tenant: str, request_id: str) -> FeedbackRecord | None:
    f = feedback
    row = conn.execute(sa.select(f).where(f.c.tenant == tenant, f.c.request_id == request_id)).one_or_none()
    return None if row is None else feedback_from_row(row)
