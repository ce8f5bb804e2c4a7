"""The store on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL through a URL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deskpilot.errors import StoreNotFoundError
from deskpilot.store import queue, sql_reads
from deskpilot.store.base import MAX_PAGE, DecisionStore, DeletedRows, ReviewedPage, check_page
from deskpilot.store.columns import MONITOR_PAGE, ColumnsBuilder, DecisionColumns
from deskpilot.store.engine import sqlite_file_problem, translated
from deskpilot.store.queue import COUNT_CAP, Cursor, QueuePage, QueueQuery
from deskpilot.store.records import (
    DecisionRecord,
    FeedbackRecord,
    MonitorRunRecord,
    ShadowPair,
    ShadowRecord,
    utc_now,
)
from deskpilot.store.sql_base import SqlBacked
from deskpilot.store.sql_rows import (
    decision_from_row,
    decision_row,
    feedback_from_row,
    shadow_pair,
    shadow_row,
)
from deskpilot.store.tables import (
    decisions,
    feedback,
    kb_items,
    shadow_decisions,
    suggestion_feedback,
    suggestions,
)

PURGE_BATCH = 2000  # decisions per transaction of a purge
_IN_CHUNK = 500  # keys per IN list: well under SQLite's limit on bound parameters


class SqlStore(SqlBacked, DecisionStore):
    """Constructing one never connects, so that a service can start while its database is down; the
    first call that reaches the database checks the schema revision (once) and :meth:`ping` always does."""

    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        if not records:
            return
        rows = [decision_row(record) for record in records]
        statement = self._insert(decisions).on_conflict_do_nothing(index_elements=["tenant", "request_id"])
        with translated("writing decisions", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            conn.execute(statement, rows)

    def get_decision(self, tenant: str, request_id: str) -> DecisionRecord | None:
        query = sa.select(decisions).where(decisions.c.tenant == tenant, decisions.c.request_id == request_id)
        with translated("reading a decision", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            row = conn.execute(query).one_or_none()
        return None if row is None else decision_from_row(row)

    def decisions(self, tenant: str, limit: int = 100, offset: int = 0) -> list[DecisionRecord]:
        check_page(limit, offset)
        query = (
            sa.select(decisions)
            .where(decisions.c.tenant == tenant)
            .order_by(decisions.c.created_at.desc(), decisions.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with translated("listing decisions", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [decision_from_row(row) for row in conn.execute(query)]

    def decisions_for_http_request(
        self, http_request_id: str, *, tenant: str | None = None
    ) -> list[DecisionRecord]:
        query = sa.select(decisions).where(decisions.c.http_request_id == http_request_id)
        if tenant is not None:
            query = query.where(decisions.c.tenant == tenant)
        return self._oldest_first(query, "tracing an HTTP request")

    def find_decision(self, request_id: str) -> list[DecisionRecord]:
        query = sa.select(decisions).where(decisions.c.request_id == request_id)
        return self._oldest_first(query, "finding a decision")

    def _oldest_first(self, query: sa.Select[Any], action: str) -> list[DecisionRecord]:
        query = query.order_by(decisions.c.created_at, decisions.c.id).limit(MAX_PAGE)
        with translated(action, self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [decision_from_row(row) for row in conn.execute(query)]

    def add_feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        query = sa.select(decisions.c.intent, decisions.c.model_version).where(
            decisions.c.tenant == tenant, decisions.c.request_id == request_id
        )
        with translated("recording feedback", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            found = conn.execute(query).one_or_none()
            if found is None:
                raise StoreNotFoundError(f"no request {request_id!r} for this tenant")
            record = FeedbackRecord(
                tenant=tenant,
                request_id=request_id,
                correct_intent=correct_intent,
                predicted_intent=found.intent,
                model_version=found.model_version,
                created_at=utc_now(),
            )
            values = {
                "tenant": tenant,
                "request_id": request_id,
                "correct_intent": correct_intent,
                "predicted_intent": record.predicted_intent,
                "model_version": record.model_version,
                "created_at": record.created_at,
            }
            statement = self._insert(feedback).values(values)
            replace = {key: statement.excluded[key] for key in ("correct_intent", "created_at")}
            upsert = statement.on_conflict_do_update(index_elements=["tenant", "request_id"], set_=replace)
            conn.execute(upsert)
        return record

    def feedback(
        self, tenant: str, since: datetime | None = None, limit: int = MAX_PAGE
    ) -> list[FeedbackRecord]:
        check_page(limit)
        query = sa.select(feedback).where(feedback.c.tenant == tenant)
        if since is not None:
            query = query.where(feedback.c.created_at >= since)
        query = query.order_by(feedback.c.created_at, feedback.c.id).limit(limit)
        with translated("listing feedback", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [feedback_from_row(row) for row in conn.execute(query)]

    def queue_page(self, tenant: str, query: QueueQuery, *, limit: int) -> QueuePage:
        with translated("reading the queue", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return queue.read_page(conn, tenant, query, limit)

    def queue_count(self, tenant: str, query: QueueQuery, *, cap: int = COUNT_CAP) -> int:
        with translated("counting the queue", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return queue.read_count(conn, tenant, query, cap)

    def queue_position(self, tenant: str, request_id: str) -> Cursor | None:
        with translated("reading the queue", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return queue.read_position(conn, tenant, request_id)

    def verdict(self, tenant: str, request_id: str) -> FeedbackRecord | None:
        with translated("reading a verdict", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return queue.read_verdict(conn, tenant, request_id)

    def write_shadow(self, records: Sequence[ShadowRecord]) -> None:
        if not records:
            return
        rows = [shadow_row(record) for record in records]
        statement = self._insert(shadow_decisions).on_conflict_do_nothing(
            index_elements=["tenant", "request_id", "model_version"]
        )
        with translated("writing shadow answers", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            conn.execute(statement, rows)

    def shadow_comparison(
        self,
        model_name: str,
        challenger_version: str,
        since: datetime | None = None,
        *,
        tenant: str | None = None,
    ) -> list[ShadowPair]:
        s, d, f = shadow_decisions, decisions, feedback
        query = (
            sa.select(
                s.c.tenant,
                s.c.request_id,
                s.c.model_version,
                s.c.intent,
                s.c.confidence,
                s.c.route,
                s.c.created_at,
                d.c.model_version.label("champion_version"),
                d.c.intent.label("champion_intent"),
                d.c.confidence.label("champion_confidence"),
                d.c.route.label("champion_route"),
                f.c.correct_intent,
            )
            .join(d, sa.and_(d.c.tenant == s.c.tenant, d.c.request_id == s.c.request_id))
            .outerjoin(f, sa.and_(f.c.tenant == s.c.tenant, f.c.request_id == s.c.request_id))
            .where(
                s.c.model_name == model_name,
                s.c.model_version == challenger_version,
                d.c.model_name == model_name,
                d.c.fallback.is_(False),
            )
            .order_by(s.c.created_at, s.c.id)
        )
        if since is not None:
            query = query.where(s.c.created_at >= since)
        if tenant is not None:
            query = query.where(s.c.tenant == tenant)
        with translated("reading shadow comparisons", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [shadow_pair(row) for row in conn.execute(query)]

    def ping(self) -> None:
        self._schema_checked = False
        with translated("checking the connection", self._url), self._engine.connect() as conn:
            self._check_schema(conn)

    def purge(self, before: datetime, *, batch: int = PURGE_BATCH) -> DeletedRows:
        d, s = decisions, shadow_decisions
        done = DeletedRows()
        with translated("purging old records", self._url):
            while True:
                with self._engine.begin() as conn:
                    self._check_schema(conn)
                    self._secure_delete(conn)
                    rows = conn.execute(
                        sa.select(d.c.id, d.c.tenant, d.c.request_id)
                        .where(d.c.created_at < before)
                        .order_by(d.c.id)
                        .limit(batch)
                    ).all()
                    done += self._delete_decisions(conn, rows, shadow=False)
                if len(rows) < batch:
                    break
            while True:
                with self._engine.begin() as conn:
                    ids = conn.execute(
                        sa.select(s.c.id).where(s.c.created_at < before).order_by(s.c.id).limit(batch)
                    ).scalars()
                    chunk = list(ids)
                    if chunk:
                        gone = conn.execute(sa.delete(s).where(s.c.id.in_(chunk))).rowcount
                        done += DeletedRows(shadow=gone)
                if len(chunk) < batch:
                    break
            with self._engine.begin() as conn:
                self._secure_delete(conn)
                old = self._delete_suggestions(conn, suggestions.c.created_at < before)
                done += DeletedRows(suggestions=old)
        return done

    def erase_ticket(self, ticket_ids: Sequence[str], *, tenant: str | None = None) -> DeletedRows:
        d = decisions
        if not ticket_ids:
            return DeletedRows()
        query = sa.select(d.c.id, d.c.tenant, d.c.request_id).where(d.c.ticket_id.in_(list(ticket_ids)))
        if tenant is not None:
            query = query.where(d.c.tenant == tenant)
        with translated("erasing a ticket", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            self._secure_delete(conn)
            done = self._delete_decisions(conn, conn.execute(query).all(), shadow=True)
            items = sa.delete(kb_items).where(
                kb_items.c.kind == "ticket", kb_items.c.item_id.in_(list(ticket_ids))
            )
            if tenant is not None:
                items = items.where(kb_items.c.tenant == tenant)
            done += DeletedRows(knowledge=conn.execute(items).rowcount)
        if self._url.get_backend_name() == "sqlite":
            # Old page versions stay in the write-ahead log until a checkpoint copies them back.
            with translated("erasing a ticket", self._url), self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return done

    def reviewed_page(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        reviewed_only: bool = False,
        after_id: int = 0,
        limit: int = MAX_PAGE,
    ) -> ReviewedPage:
        with translated("reading decisions with their verdicts", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return sql_reads.reviewed_page(
                conn,
                decision_from_row,
                since=since,
                until=until,
                tenant=tenant,
                reviewed_only=reviewed_only,
                after_id=after_id,
                limit=limit,
            )

    def monitor_columns(
        self,
        *,
        since: datetime,
        until: datetime,
        tenant: str | None = None,
        page: int = MONITOR_PAGE,
    ) -> DecisionColumns:
        builder = ColumnsBuilder()
        after = 0
        while True:
            # A connection per page, as scan_reviewed: no read transaction lasts the whole scan.
            with translated("reading decisions for the monitor", self._url), self._engine.connect() as conn:
                self._check_schema(conn)
                columns, after = sql_reads.monitor_page(
                    conn, since=since, until=until, tenant=tenant, after_id=after, limit=page
                )
            builder.extend(columns)
            if not columns or len(columns[0]) < page:
                return builder.build()

    def add_monitor_run(self, record: MonitorRunRecord) -> int:
        with translated("recording a monitor run", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            return sql_reads.add_monitor_run(conn, record)

    def monitor_runs(
        self,
        limit: int = 100,
        *,
        model_name: str | None = None,
        overall: bool = False,
        fired: bool = False,
    ) -> list[MonitorRunRecord]:
        with translated("reading monitor runs", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return sql_reads.latest_monitor_runs(
                conn, limit, model_name=model_name, overall=overall, fired=fired
            )

    def storage_problems(self) -> list[tuple[str, str]]:
        problem = sqlite_file_problem(self._engine)
        return [] if problem is None else [problem]

    def _delete_decisions(
        self, conn: Connection, rows: Sequence[sa.Row[Any]], *, shadow: bool
    ) -> DeletedRows:
        """Delete decisions (by id) with their feedback, and with ``shadow`` the shadow answers to them."""
        d, f, s, g = decisions, feedback, shadow_decisions, suggestions
        done = DeletedRows()
        for start in range(0, len(rows), _IN_CHUNK):
            chunk = rows[start : start + _IN_CHUNK]
            keys = [(row.tenant, row.request_id) for row in chunk]
            gone_feedback = conn.execute(sa.delete(f).where(sa.tuple_(f.c.tenant, f.c.request_id).in_(keys)))
            gone_shadow = (
                conn.execute(sa.delete(s).where(sa.tuple_(s.c.tenant, s.c.request_id).in_(keys))).rowcount
                if shadow
                else 0
            )
            gone_suggestions = self._delete_suggestions(conn, sa.tuple_(g.c.tenant, g.c.request_id).in_(keys))
            gone = conn.execute(sa.delete(d).where(d.c.id.in_([row.id for row in chunk])))
            done += DeletedRows(gone.rowcount, gone_feedback.rowcount, gone_shadow, gone_suggestions)
        return done

    def _delete_suggestions(self, conn: Connection, where: Any) -> int:
        """Delete the suggestions ``where`` selects, their verdicts first."""
        g, v = suggestions, suggestion_feedback
        chosen = sa.select(g.c.tenant, g.c.suggestion_id).where(where)
        conn.execute(sa.delete(v).where(sa.tuple_(v.c.tenant, v.c.suggestion_id).in_(chosen)))
        return int(conn.execute(sa.delete(g).where(where)).rowcount)

    def _secure_delete(self, conn: Connection) -> None:
        """On SQLite, overwrite deleted rows instead of leaving them in free pages of the file."""
        if self._url.get_backend_name() == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
