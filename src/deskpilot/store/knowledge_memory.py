"""An in-memory :class:`KnowledgeStore` for unit tests, with the SQL store's contract."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from deskpilot.errors import StoreNotFoundError, StoreUnavailableError
from deskpilot.retrieval.items import KnowledgeItem
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


class InMemoryKnowledgeStore(KnowledgeStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], KnowledgeItem] = {}
        self._suggestions: dict[tuple[str, str], SuggestionRecord] = {}
        self._verdicts: dict[tuple[str, str], SuggestionFeedbackRecord] = {}
        self._budget: dict[tuple[str, str], BudgetUsage] = {}
        self.available = True
        """``False`` makes every call raise :class:`StoreUnavailableError`."""

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailableError("the in-memory knowledge store is switched off")

    def upsert_items(self, items: Sequence[KnowledgeItem]) -> ImportCounts:
        latest = {(item.tenant, item.id): item for item in items}
        added = replaced = unchanged = 0
        with self._lock:
            self._check()
            for key, item in latest.items():
                before = self._items.get(key)
                if before is None:
                    added += 1
                elif before == item:
                    unchanged += 1
                    continue
                else:
                    replaced += 1
                self._items[key] = item
        return ImportCounts(added=added, replaced=replaced, unchanged=unchanged)

    def kb_items(self, tenant: str | None = None) -> list[KnowledgeItem]:
        with self._lock:
            self._check()
            return [self._items[key] for key in sorted(self._items) if tenant is None or key[0] == tenant]

    def kb_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            self._check()
            for item in self._items.values():
                counts[(item.tenant, item.kind)] = counts.get((item.tenant, item.kind), 0) + 1
        return counts

    def delete_items(self, item_ids: Sequence[str], *, tenant: str | None = None) -> int:
        wanted = set(item_ids)
        with self._lock:
            self._check()
            gone = [k for k in self._items if k[1] in wanted and (tenant is None or k[0] == tenant)]
            for key in gone:
                del self._items[key]
        return len(gone)

    def write_suggestion(self, record: SuggestionRecord) -> None:
        with self._lock:
            self._check()
            self._suggestions.setdefault((record.tenant, record.suggestion_id), record)

    def get_suggestion(self, tenant: str, suggestion_id: str) -> SuggestionRecord | None:
        with self._lock:
            self._check()
            return self._suggestions.get((tenant, suggestion_id))

    def latest_suggestion(self, tenant: str, request_id: str) -> LatestSuggestion | None:
        with self._lock:
            self._check()
            mine = [
                (n, record)
                for n, record in enumerate(self._suggestions.values())
                if record.tenant == tenant and record.request_id == request_id
            ]
            if not mine:
                return None
            _, newest = max(mine, key=lambda found: (found[1].created_at, found[0]))
            verdict = self._verdicts.get((tenant, newest.suggestion_id))
        return LatestSuggestion(newest, None if verdict is None else verdict.verdict)

    def add_suggestion_feedback(
        self, tenant: str, suggestion_id: str, verdict: Verdict, edit_distance: int | None
    ) -> SuggestionFeedbackRecord:
        with self._lock:
            self._check()
            found = self._suggestions.get((tenant, suggestion_id))
            if found is None:
                raise StoreNotFoundError(f"no suggestion {suggestion_id!r} for this tenant")
            before = self._verdicts.get((tenant, suggestion_id))
            record = SuggestionFeedbackRecord(
                previous=None if before is None else before.verdict,
                tenant=tenant,
                suggestion_id=suggestion_id,
                verdict=verdict,
                edit_distance=edit_distance,
                intent=found.intent,
                provider=found.provider,
            )
            self._verdicts[(tenant, suggestion_id)] = record
        return record

    def acceptance(self, tenant: str, *, since: datetime | None = None) -> dict[tuple[str, str], Acceptance]:
        result: dict[tuple[str, str], Acceptance] = {}
        with self._lock:
            self._check()
            for (owner, _), record in self._verdicts.items():
                if owner != tenant or (since is not None and record.created_at < since):
                    continue
                key = (record.intent, record.provider)
                before = result.get(key, Acceptance())
                field = record.verdict
                result[key] = replace(before, **{field: getattr(before, field) + 1})
        return result

    def purge_suggestions(self, before: datetime) -> int:
        with self._lock:
            self._check()
            old = [k for k, r in self._suggestions.items() if r.created_at < before]
            for key in old:
                del self._suggestions[key]
                self._verdicts.pop(key, None)
        return len(old)

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
        with self._lock:
            self._check()
            now = self._budget.get((tenant, period), BudgetUsage())
            if max_tokens is not None and now.spent_tokens + now.reserved_tokens + tokens > max_tokens:
                return False
            if max_cost_usd is not None and now.spent_cost + now.reserved_cost + cost_usd > max_cost_usd:
                return False
            self._budget[(tenant, period)] = replace(
                now, reserved_tokens=now.reserved_tokens + tokens, reserved_cost=now.reserved_cost + cost_usd
            )
            return True

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
        with self._lock:
            self._check()
            now = self._budget.get((tenant, period), BudgetUsage())
            self._budget[(tenant, period)] = BudgetUsage(
                reserved_tokens=max(now.reserved_tokens - reserved_tokens, 0),
                reserved_cost=max(now.reserved_cost - reserved_cost, 0.0),
                spent_tokens=now.spent_tokens + used_tokens,
                spent_cost=now.spent_cost + used_cost,
            )

    def budget_usage(self, tenant: str, period: str) -> BudgetUsage:
        with self._lock:
            self._check()
            return self._budget.get((tenant, period), BudgetUsage())
