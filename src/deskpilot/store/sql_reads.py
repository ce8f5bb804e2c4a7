"""The SQL store's bulk reads for the monitor and the feedback export, and the monitor's run history.

Kept apart from :mod:`deskpilot.store.sql` because they scan rather than look up: keyset pages over the
primary key (an index every database has), decisions joined to their verdicts.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deskpilot.store.base import MAX_PAGE, ReviewedPage, check_page
from deskpilot.store.records import MonitorRunRecord, ReviewedDecision
from deskpilot.store.tables import decisions, feedback, monitor_runs


def reviewed_page(
    conn: Connection,
    decision_from_row: Any,
    *,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    reviewed_only: bool,
    after_id: int,
    limit: int,
) -> ReviewedPage:
    check_page(limit)
    d, f = decisions, feedback
    query = sa.select(d, f.c.correct_intent, f.c.created_at.label("feedback_at"))
    join = sa.and_(f.c.tenant == d.c.tenant, f.c.request_id == d.c.request_id)
    query = query.join(f, join) if reviewed_only else query.outerjoin(f, join)
    query = query.where(d.c.id > after_id)
    if since is not None:
        query = query.where(d.c.created_at >= since)
    if until is not None:
        query = query.where(d.c.created_at < until)
    if tenant is not None:
        query = query.where(d.c.tenant == tenant)
    rows = conn.execute(query.order_by(d.c.id).limit(limit)).all()
    found = [
        ReviewedDecision(
            decision=decision_from_row(row), correct_intent=row.correct_intent, feedback_at=row.feedback_at
        )
        for row in rows
    ]
    return ReviewedPage(found, rows[-1].id if rows else after_id)


def monitor_page(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    tenant: str | None,
    after_id: int,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """One keyset page of the monitor's columns, transposed: the columns in the order of
    :data:`~deskpilot.store.columns.COLUMN_ORDER` (none for an empty page), and the id to continue after.

    The runner-up's confidence comes out of the JSON in SQL, so no ``alternatives`` is decoded in Python.
    On SQLite ``created_at`` is read as its stored text (naive UTC), which numpy converts in one step,
    instead of through the UTC type's per-row processing.
    """
    if limit < 1:
        raise ValueError(f"a page holds at least one row, got {limit}")
    d, f = decisions, feedback
    created = sa.type_coerce(d.c.created_at, sa.String()) if conn.dialect.name == "sqlite" else d.c.created_at
    runner_up = sa.func.coalesce(d.c.alternatives[(0, "confidence")].as_float(), 0.0)
    query = (
        sa.select(
            d.c.id,
            d.c.tenant,
            d.c.model_name,
            d.c.model_version,
            d.c.fallback,
            d.c.intent,
            d.c.confidence,
            runner_up,
            d.c.route,
            d.c.review_sample,
            created,
            d.c.text,
            f.c.correct_intent,
        )
        .outerjoin(f, sa.and_(f.c.tenant == d.c.tenant, f.c.request_id == d.c.request_id))
        .where(d.c.id > after_id, d.c.created_at >= since, d.c.created_at < until)
    )
    if tenant is not None:
        query = query.where(d.c.tenant == tenant)
    rows = conn.execute(query.order_by(d.c.id).limit(limit)).tuples().all()
    if not rows:
        return [], after_id
    ids, *columns = zip(*rows, strict=True)
    return columns, int(ids[-1])


def add_monitor_run(conn: Connection, record: MonitorRunRecord) -> int:
    values = {key: value for key, value in asdict(record).items() if key != "id"}  # the columns, 1:1
    inserted = conn.execute(sa.insert(monitor_runs).values(values).returning(monitor_runs.c.id))
    return int(inserted.scalar_one())


def latest_monitor_runs(
    conn: Connection, limit: int, *, model_name: str | None = None, overall: bool = False, fired: bool = False
) -> list[MonitorRunRecord]:
    check_page(min(limit, MAX_PAGE))
    m = monitor_runs
    query = sa.select(m)
    if model_name is not None:
        query = query.where(m.c.model_name == model_name)
    if overall:
        query = query.where(m.c.tenant.is_(None))
    if fired:
        query = query.where(m.c.fired.is_(True))
    rows = conn.execute(query.order_by(m.c.id.desc()).limit(limit)).all()
    return [MonitorRunRecord(**row._mapping) for row in reversed(rows)]
