"""An in-memory store for unit tests: the SQL store's contract, plus a switch that simulates an outage."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from deskpilot.errors import StoreNotFoundError, StoreUnavailableError
from deskpilot.store.base import MAX_PAGE, DecisionStore, DeletedRows, ReviewedPage, check_page
from deskpilot.store.columns import MONITOR_PAGE, ColumnsBuilder, DecisionColumns
from deskpilot.store.queue import (
    COUNT_CAP,
    Cursor,
    QueuePage,
    QueueQuery,
    QueueRow,
    check_queue_page,
    page_of,
)
from deskpilot.store.records import (
    DecisionRecord,
    FeedbackRecord,
    MonitorRunRecord,
    ReviewedDecision,
    ShadowPair,
    ShadowRecord,
    utc_now,
)


class InMemoryStore(DecisionStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, str], DecisionRecord] = {}
        self._feedback: dict[tuple[str, str], FeedbackRecord] = {}
        self._shadow: dict[tuple[str, str, str], ShadowRecord] = {}
        self._ids: dict[tuple[str, str], int] = {}  # the id each decision was stored under, as a database's
        self._runs: list[MonitorRunRecord] = []
        self._next_id = 1
        self.available = True
        """``False`` makes every call raise :class:`StoreUnavailableError`, as a lost database does."""
        self.batches: list[tuple[str, ...]] = []
        """The request ids of each successful ``write_decisions`` call, in call order."""
        self.write_attempts = 0

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailableError("the in-memory store is switched off (simulated outage)")

    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        with self._lock:
            self.write_attempts += 1
            self._check()
            for record in records:
                key = (record.tenant, record.request_id)
                if key not in self._decisions:
                    self._decisions[key] = record
                    self._ids[key] = self._next_id
                    self._next_id += 1
            self.batches.append(tuple(record.request_id for record in records))

    def get_decision(self, tenant: str, request_id: str) -> DecisionRecord | None:
        with self._lock:
            self._check()
            return self._decisions.get((tenant, request_id))

    def decisions(self, tenant: str, limit: int = 100, offset: int = 0) -> list[DecisionRecord]:
        check_page(limit, offset)
        with self._lock:
            self._check()
            mine = [(i, r) for i, r in enumerate(self._decisions.values()) if r.tenant == tenant]
        mine.sort(key=lambda item: (item[1].created_at, item[0]), reverse=True)
        return [record for _, record in mine[offset : offset + limit]]

    def decisions_for_http_request(
        self, http_request_id: str, *, tenant: str | None = None
    ) -> list[DecisionRecord]:
        return self._oldest_first(
            lambda r: r.http_request_id == http_request_id and (tenant is None or r.tenant == tenant)
        )

    def find_decision(self, request_id: str) -> list[DecisionRecord]:
        return self._oldest_first(lambda r: r.request_id == request_id)

    def _oldest_first(self, keep: Callable[[DecisionRecord], bool]) -> list[DecisionRecord]:
        with self._lock:
            self._check()
            found = [(i, r) for i, r in enumerate(self._decisions.values()) if keep(r)]
        found.sort(key=lambda item: (item[1].created_at, item[0]))
        return [record for _, record in found[:MAX_PAGE]]

    def add_feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        with self._lock:
            self._check()
            decision = self._decisions.get((tenant, request_id))
            if decision is None:
                raise StoreNotFoundError(f"no request {request_id!r} for this tenant")
            record = FeedbackRecord(
                tenant=tenant,
                request_id=request_id,
                correct_intent=correct_intent,
                predicted_intent=decision.intent,
                model_version=decision.model_version,
                created_at=utc_now(),
            )
            self._feedback.pop((tenant, request_id), None)  # a replaced verdict moves to the end
            self._feedback[(tenant, request_id)] = record
            return record

    def feedback(
        self, tenant: str, since: datetime | None = None, limit: int = MAX_PAGE
    ) -> list[FeedbackRecord]:
        check_page(limit)
        with self._lock:
            self._check()
            mine = [
                r
                for r in self._feedback.values()
                if r.tenant == tenant and (since is None or r.created_at >= since)
            ]
        return sorted(mine, key=lambda r: r.created_at)[:limit]

    def queue_page(self, tenant: str, query: QueueQuery, *, limit: int) -> QueuePage:
        check_queue_page(limit)
        rows = self._queued(tenant, query)
        after = query.after
        if after is not None:
            rows = [
                row for row in rows if (row.cursor.created_at, row.cursor.id) < (after.created_at, after.id)
            ]
        return page_of(rows[: limit + 1], limit)

    def queue_count(self, tenant: str, query: QueueQuery, *, cap: int = COUNT_CAP) -> int:
        if cap < 0:
            raise ValueError(f"cap must be >= 0, got {cap}")
        return min(len(self._queued(tenant, query)), cap + 1)

    def _queued(self, tenant: str, query: QueueQuery) -> list[QueueRow]:
        """Every queued decision of the tenant that ``query`` matches, newest first."""
        with self._lock:
            self._check()
            rows = []
            for key, record in self._decisions.items():
                verdict = self._feedback.get(key)
                intent = None if verdict is None else verdict.correct_intent
                if record.tenant == tenant and query.matches(record, intent):
                    rows.append(QueueRow(record, Cursor(record.created_at, self._ids[key]), intent))
        rows.sort(key=lambda row: row.cursor, reverse=True)
        return rows

    def queue_position(self, tenant: str, request_id: str) -> Cursor | None:
        with self._lock:
            self._check()
            record = self._decisions.get((tenant, request_id))
            return None if record is None else Cursor(record.created_at, self._ids[(tenant, request_id)])

    def verdict(self, tenant: str, request_id: str) -> FeedbackRecord | None:
        with self._lock:
            self._check()
            return self._feedback.get((tenant, request_id))

    def write_shadow(self, records: Sequence[ShadowRecord]) -> None:
        with self._lock:
            self._check()
            for record in records:
                self._shadow.setdefault((record.tenant, record.request_id, record.model_version), record)

    def shadow_comparison(
        self,
        model_name: str,
        challenger_version: str,
        since: datetime | None = None,
        *,
        tenant: str | None = None,
    ) -> list[ShadowPair]:
        with self._lock:
            self._check()
            pairs = []
            for (owner, request_id, version), shadow in self._shadow.items():
                if (
                    shadow.model_name != model_name
                    or version != challenger_version
                    or (since is not None and shadow.created_at < since)
                    or (tenant is not None and owner != tenant)
                ):
                    continue
                decision = self._decisions.get((owner, request_id))
                if decision is None or decision.fallback or decision.model_name != model_name:
                    continue
                verdict = self._feedback.get((owner, request_id))
                pairs.append(_pair(decision, shadow, verdict))
        return sorted(pairs, key=lambda pair: pair.created_at)

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
        check_page(limit)
        with self._lock:
            self._check()
            rows: list[ReviewedDecision] = []
            last = after_id
            for key, record in self._decisions.items():
                at = self._ids[key]
                verdict = self._feedback.get(key)
                if (
                    at <= after_id
                    or (since is not None and record.created_at < since)
                    or (until is not None and record.created_at >= until)
                    or (tenant is not None and record.tenant != tenant)
                    or (reviewed_only and verdict is None)
                ):
                    continue
                rows.append(
                    ReviewedDecision(
                        decision=record,
                        correct_intent=None if verdict is None else verdict.correct_intent,
                        feedback_at=None if verdict is None else verdict.created_at,
                    )
                )
                last = at
                if len(rows) == limit:
                    break
        return ReviewedPage(rows, last)

    def monitor_columns(
        self,
        *,
        since: datetime,
        until: datetime,
        tenant: str | None = None,
        page: int = MONITOR_PAGE,
    ) -> DecisionColumns:
        """One pass under the lock (``page`` only shapes the SQL store's reads)."""
        if page < 1:
            raise ValueError(f"a page holds at least one row, got {page}")
        with self._lock:
            self._check()
            rows = [
                _monitor_row(record, self._feedback.get(key))
                for key, record in self._decisions.items()  # insertion order is id order
                if since <= record.created_at < until and (tenant is None or record.tenant == tenant)
            ]
        builder = ColumnsBuilder()
        builder.extend(list(zip(*rows, strict=True)))
        return builder.build()

    def add_monitor_run(self, record: MonitorRunRecord) -> int:
        with self._lock:
            self._check()
            stored = replace(record, id=len(self._runs) + 1)
            self._runs.append(stored)
            return stored.id or 0

    def monitor_runs(
        self,
        limit: int = 100,
        *,
        model_name: str | None = None,
        overall: bool = False,
        fired: bool = False,
    ) -> list[MonitorRunRecord]:
        with self._lock:
            self._check()
            runs = [
                run
                for run in self._runs
                if (model_name is None or run.model_name == model_name)
                and (not overall or run.tenant is None)
                and (not fired or run.fired)
            ]
            return runs[-limit:] if limit else []

    def ping(self) -> None:
        with self._lock:
            self._check()

    def close(self) -> None:
        """Nothing to release; the contents stay readable for assertions."""

    def purge(self, before: datetime) -> DeletedRows:
        with self._lock:
            self._check()
            old = {key for key, record in self._decisions.items() if record.created_at < before}
            shadow = {key for key, record in self._shadow.items() if record.created_at < before}
            return self._delete(old, shadow)

    def erase_ticket(self, ticket_ids: Sequence[str], *, tenant: str | None = None) -> DeletedRows:
        with self._lock:
            self._check()
            found = {
                key
                for key, record in self._decisions.items()
                if record.ticket_id is not None
                and record.ticket_id in ticket_ids
                and (tenant is None or record.tenant == tenant)
            }
            shadow = {key for key in self._shadow if key[:2] in found}
            return self._delete(found, shadow)

    def _delete(self, keys: set[tuple[str, str]], shadow: set[tuple[str, str, str]]) -> DeletedRows:
        feedback = keys & self._feedback.keys()
        for key in keys:
            del self._decisions[key]
            del self._ids[key]
        for key in feedback:
            del self._feedback[key]
        for shadow_key in shadow:
            del self._shadow[shadow_key]
        return DeletedRows(len(keys), len(feedback), len(shadow))


def _monitor_row(record: DecisionRecord, verdict: FeedbackRecord | None) -> tuple[object, ...]:
    """A decision's values in the order of :data:`~deskpilot.store.columns.COLUMN_ORDER`."""
    return (
        record.tenant,
        record.model_name,
        record.model_version,
        record.fallback,
        record.intent,
        record.confidence,
        record.alternatives[0][1] if record.alternatives else 0.0,
        record.route.value,
        record.review_sample,
        record.created_at,
        record.text,
        None if verdict is None else verdict.correct_intent,
    )


def _pair(decision: DecisionRecord, shadow: ShadowRecord, verdict: FeedbackRecord | None) -> ShadowPair:
    return ShadowPair(
        tenant=shadow.tenant,
        request_id=shadow.request_id,
        champion_version=decision.model_version,
        champion_intent=decision.intent,
        champion_confidence=decision.confidence,
        champion_route=decision.route,
        challenger_version=shadow.model_version,
        challenger_intent=shadow.intent,
        challenger_confidence=shadow.confidence,
        challenger_route=shadow.route,
        correct_intent=None if verdict is None else verdict.correct_intent,
        created_at=shadow.created_at,
    )
