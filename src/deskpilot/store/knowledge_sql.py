""":class:`KnowledgeStore` on SQLAlchemy Core, in the decisions' database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deskpilot.errors import StoreNotFoundError
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.store.engine import translated
from deskpilot.store.knowledge import (
    Acceptance,
    BudgetUsage,
    ImportCounts,
    KnowledgeStore,
    LatestSuggestion,
    SuggestionFeedbackRecord,
    SuggestionRecord,
    Verdict,
)
from deskpilot.store.records import utc_now
from deskpilot.store.sql_base import SqlBacked
from deskpilot.store.tables import kb_items, llm_budget, suggestion_feedback, suggestions

_IN_CHUNK = 500


class SqlKnowledgeStore(SqlBacked, KnowledgeStore):
    """Constructing one never connects; the first call checks the schema revision once."""

    def upsert_items(self, items: Sequence[KnowledgeItem]) -> ImportCounts:
        if not items:
            return ImportCounts()
        latest = {(item.tenant, item.id): item for item in items}  # the last of a repeated id wins
        added = replaced = unchanged = 0
        now = utc_now()
        with translated("importing knowledge items", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            stored = self._existing(conn, list(latest))
            rows = []
            for key, item in latest.items():
                row = _item_row(item, now)
                before = stored.get(key)
                if before is None:
                    added += 1
                elif before == _comparable(row):
                    unchanged += 1
                    continue
                else:
                    replaced += 1
                rows.append(row)
            if rows:
                statement = self._insert(kb_items)
                statement = statement.on_conflict_do_update(
                    index_elements=["tenant", "item_id"],
                    set_={
                        name: statement.excluded[name]
                        for name in ("kind", "title", "text", "intents", "reply", "source", "updated_at")
                    },
                )
                conn.execute(statement, rows)
        return ImportCounts(added=added, replaced=replaced, unchanged=unchanged)

    def _existing(
        self, conn: Connection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Any, ...]]:
        found: dict[tuple[str, str], tuple[Any, ...]] = {}
        by_tenant: dict[str, list[str]] = {}
        for tenant, item_id in keys:
            by_tenant.setdefault(tenant, []).append(item_id)
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), _IN_CHUNK):
                query = sa.select(kb_items).where(
                    kb_items.c.tenant == tenant, kb_items.c.item_id.in_(ids[start : start + _IN_CHUNK])
                )
                for row in conn.execute(query).mappings():
                    found[(tenant, row["item_id"])] = _comparable(dict(row))
        return found

    def kb_items(self, tenant: str | None = None) -> list[KnowledgeItem]:
        query = sa.select(kb_items).order_by(kb_items.c.tenant, kb_items.c.item_id)
        if tenant is not None:
            query = query.where(kb_items.c.tenant == tenant)
        with translated("reading knowledge items", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [_item(row) for row in conn.execute(query).mappings()]

    def kb_counts(self) -> dict[tuple[str, str], int]:
        query = sa.select(kb_items.c.tenant, kb_items.c.kind, sa.func.count()).group_by(
            kb_items.c.tenant, kb_items.c.kind
        )
        with translated("counting knowledge items", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return {(tenant, kind): int(n) for tenant, kind, n in conn.execute(query)}

    def delete_items(self, item_ids: Sequence[str], *, tenant: str | None = None) -> int:
        if not item_ids:
            return 0
        gone = 0
        with translated("erasing knowledge items", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            ids = list(item_ids)
            for start in range(0, len(ids), _IN_CHUNK):
                statement = sa.delete(kb_items).where(kb_items.c.item_id.in_(ids[start : start + _IN_CHUNK]))
                if tenant is not None:
                    statement = statement.where(kb_items.c.tenant == tenant)
                gone += conn.execute(statement).rowcount
        return gone

    def write_suggestion(self, record: SuggestionRecord) -> None:
        with translated("recording a suggestion", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            statement = self._insert(suggestions).values(_suggestion_row(record))
            conn.execute(statement.on_conflict_do_nothing(index_elements=["tenant", "suggestion_id"]))

    def get_suggestion(self, tenant: str, suggestion_id: str) -> SuggestionRecord | None:
        query = sa.select(suggestions).where(
            suggestions.c.tenant == tenant, suggestions.c.suggestion_id == suggestion_id
        )
        with translated("reading a suggestion", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _suggestion(row)

    def latest_suggestion(self, tenant: str, request_id: str) -> LatestSuggestion | None:
        g, v = suggestions, suggestion_feedback
        # no ORDER BY ... LIMIT 1: SQLite would rather walk the (tenant, created_at) index in order than
        # look up the few suggestions of one request by (tenant, request_id)
        query = (
            sa.select(g, v.c.verdict)
            .outerjoin(v, sa.and_(v.c.tenant == g.c.tenant, v.c.suggestion_id == g.c.suggestion_id))
            .where(g.c.tenant == tenant, g.c.request_id == request_id)
        )
        with translated("reading a ticket's suggestion", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            rows = conn.execute(query).mappings().all()
        if not rows:
            return None
        newest = max(rows, key=lambda row: (row["created_at"], row["id"]))
        return LatestSuggestion(_suggestion(newest), newest["verdict"])

    def add_suggestion_feedback(
        self, tenant: str, suggestion_id: str, verdict: Verdict, edit_distance: int | None
    ) -> SuggestionFeedbackRecord:
        found_query = sa.select(suggestions.c.intent, suggestions.c.provider).where(
            suggestions.c.tenant == tenant, suggestions.c.suggestion_id == suggestion_id
        )
        with translated("recording suggestion feedback", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            found = conn.execute(found_query).one_or_none()
            if found is None:
                raise StoreNotFoundError(f"no suggestion {suggestion_id!r} for this tenant")
            previous = conn.execute(
                sa.select(suggestion_feedback.c.verdict).where(
                    suggestion_feedback.c.tenant == tenant,
                    suggestion_feedback.c.suggestion_id == suggestion_id,
                )
            ).scalar_one_or_none()
            record = SuggestionFeedbackRecord(
                previous=previous,
                tenant=tenant,
                suggestion_id=suggestion_id,
                verdict=verdict,
                edit_distance=edit_distance,
                intent=found.intent,
                provider=found.provider,
            )
            values = {
                "tenant": tenant,
                "suggestion_id": suggestion_id,
                "verdict": verdict,
                "edit_distance": edit_distance,
                "created_at": record.created_at,
            }
            statement = self._insert(suggestion_feedback).values(values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["tenant", "suggestion_id"],
                    set_={k: statement.excluded[k] for k in ("verdict", "edit_distance", "created_at")},
                )
            )
        return record

    def acceptance(self, tenant: str, *, since: datetime | None = None) -> dict[tuple[str, str], Acceptance]:
        s, f = suggestions, suggestion_feedback
        query = (
            sa.select(s.c.intent, s.c.provider, f.c.verdict, sa.func.count())
            .select_from(f.join(s, sa.and_(f.c.tenant == s.c.tenant, f.c.suggestion_id == s.c.suggestion_id)))
            .where(f.c.tenant == tenant)
            .group_by(s.c.intent, s.c.provider, f.c.verdict)
        )
        if since is not None:
            query = query.where(f.c.created_at >= since)
        counts: dict[tuple[str, str], dict[str, int]] = {}
        with translated("reading suggestion verdicts", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            for intent, provider, verdict, n in conn.execute(query):
                counts.setdefault((intent, provider), {})[verdict] = int(n)
        return {key: Acceptance(**value) for key, value in counts.items()}

    def purge_suggestions(self, before: datetime) -> int:
        with translated("purging old suggestions", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            conn.execute(
                sa.delete(suggestion_feedback).where(
                    sa.tuple_(suggestion_feedback.c.tenant, suggestion_feedback.c.suggestion_id).in_(
                        sa.select(suggestions.c.tenant, suggestions.c.suggestion_id).where(
                            suggestions.c.created_at < before
                        )
                    )
                )
            )
            return int(conn.execute(sa.delete(suggestions).where(suggestions.c.created_at < before)).rowcount)

    def reserve_budget(
        self,
        tenant: str,
        period: str,
        tokens: int,
        cost_usd: float,
        *,
        max_tokens: int | None,
        max_cost_usd: float | None,
    ) -> bool:
        b = llm_budget
        conditions = [b.c.tenant == tenant, b.c.period == period]
        if max_tokens is not None:
            conditions.append(b.c.spent_tokens + b.c.reserved_tokens + tokens <= max_tokens)
        if max_cost_usd is not None:
            conditions.append(b.c.spent_cost + b.c.reserved_cost + cost_usd <= max_cost_usd)
        update = (
            sa.update(b)
            .where(*conditions)
            .values(reserved_tokens=b.c.reserved_tokens + tokens, reserved_cost=b.c.reserved_cost + cost_usd)
        )
        with translated("reserving LLM budget", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            self._ensure_budget_row(conn, tenant, period)
            return bool(conn.execute(update).rowcount == 1)

    def settle_budget(
        self,
        tenant: str,
        period: str,
        *,
        reserved_tokens: int,
        reserved_cost: float,
        used_tokens: int,
        used_cost: float,
    ) -> None:
        b = llm_budget
        update = (
            sa.update(b)
            .where(b.c.tenant == tenant, b.c.period == period)
            .values(
                reserved_tokens=_at_least_zero(b.c.reserved_tokens - reserved_tokens),
                reserved_cost=_at_least_zero(b.c.reserved_cost - reserved_cost),
                spent_tokens=b.c.spent_tokens + used_tokens,
                spent_cost=b.c.spent_cost + used_cost,
            )
        )
        with translated("settling LLM budget", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            self._ensure_budget_row(conn, tenant, period)
            conn.execute(update)

    def budget_usage(self, tenant: str, period: str) -> BudgetUsage:
        b = llm_budget
        query = sa.select(b.c.reserved_tokens, b.c.reserved_cost, b.c.spent_tokens, b.c.spent_cost).where(
            b.c.tenant == tenant, b.c.period == period
        )
        with translated("reading LLM budget", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            row = conn.execute(query).one_or_none()
        if row is None:
            return BudgetUsage()
        return BudgetUsage(int(row[0]), float(row[1]), int(row[2]), float(row[3]))

    def _ensure_budget_row(self, conn: Connection, tenant: str, period: str) -> None:
        zero = {"reserved_tokens": 0, "reserved_cost": 0.0, "spent_tokens": 0, "spent_cost": 0.0}
        conn.execute(
            self._insert(llm_budget)
            .values(tenant=tenant, period=period, **zero)
            .on_conflict_do_nothing(index_elements=["tenant", "period"])
        )


def _at_least_zero(value: Any) -> Any:
    return sa.case((value < 0, 0), else_=value)


def _item_row(item: KnowledgeItem, now: datetime) -> dict[str, Any]:
    return {
        "tenant": item.tenant,
        "item_id": item.id,
        "kind": item.kind,
        "title": item.title,
        "text": item.text,
        "intents": list(item.intents),
        "reply": item.reply,
        "source": item.source,
        "updated_at": now,
    }


def _comparable(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["title"], row["text"], list(row["intents"]), row["reply"], row["source"])


def _item(row: Any) -> KnowledgeItem:
    return KnowledgeItem(
        id=row["item_id"],
        tenant=row["tenant"],
        kind=row["kind"],
        text=row["text"],
        title=row["title"],
        intents=tuple(row["intents"]),
        reply=row["reply"],
        source=row["source"],
    )


def _suggestion_row(record: SuggestionRecord) -> dict[str, Any]:
    return {
        "tenant": record.tenant,
        "suggestion_id": record.suggestion_id,
        "request_id": record.request_id,
        "intent": record.intent,
        "route": record.route,
        "draft": record.draft,
        "citations": list(record.citations),
        "sources": [dict(source) for source in record.sources],
        "reason": record.reason,
        "provider": record.provider,
        "model": record.model,
        "prompt_version": record.prompt_version,
        "index_version": record.index_version,
        "flags": list(record.flags),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "created_at": record.created_at,
    }


def _suggestion(row: Any) -> SuggestionRecord:
    return SuggestionRecord(
        tenant=row["tenant"],
        suggestion_id=row["suggestion_id"],
        request_id=row["request_id"],
        intent=row["intent"],
        route=row["route"],
        draft=row["draft"],
        citations=tuple(row["citations"]),
        sources=tuple(row["sources"]),
        reason=row["reason"],
        provider=row["provider"],
        model=row["model"],
        prompt_version=row["prompt_version"],
        index_version=row["index_version"],
        flags=tuple(row["flags"]),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=row["cost_usd"],
        latency_ms=row["latency_ms"],
        created_at=row["created_at"],
    )
