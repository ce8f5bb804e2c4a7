"""The copilot's records: knowledge sources, reply suggestions, the agents' verdicts, and LLM spend.

:class:`KnowledgeStore` is the interface; :mod:`deskpilot.store.knowledge_sql` keeps it in the same database
as the decisions, :mod:`deskpilot.store.knowledge_memory` in memory for unit tests. Every text given to it
must already be PII-redacted: it keeps what it is given.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.store.records import utc_now

Verdict = Literal["accepted", "edited", "rejected"]
VERDICTS: tuple[Verdict, ...] = ("accepted", "edited", "rejected")


@dataclass(frozen=True, slots=True)
class ImportCounts:
    added: int = 0
    replaced: int = 0
    unchanged: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"added": self.added, "replaced": self.replaced, "unchanged": self.unchanged}


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestionRecord:
    """One reply suggestion as shown to the agent. ``sources`` are ``{"id", "kind", "score"}`` dicts in the
    order they were numbered for citation; ``citations`` the numbers the draft cites."""

    tenant: str
    suggestion_id: str
    intent: str
    route: str
    draft: str | None
    reason: str
    provider: str
    prompt_version: str
    request_id: str | None = None
    model: str | None = None
    index_version: int | None = None
    citations: tuple[int, ...] = ()
    sources: tuple[dict[str, Any], ...] = ()
    flags: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.tenant or not self.suggestion_id:
            raise ValueError("a suggestion record needs a tenant and a suggestion id")
        if not (math.isfinite(self.cost_usd) and math.isfinite(self.latency_ms)):
            raise ValueError(f"{self.suggestion_id}: cost and latency must be finite")


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestionFeedbackRecord:
    tenant: str
    suggestion_id: str
    verdict: Verdict
    edit_distance: int | None
    intent: str
    provider: str
    created_at: datetime = field(default_factory=utc_now)
    previous: Verdict | None = None  # the verdict this one replaced, if any


@dataclass(frozen=True, slots=True)
class LatestSuggestion:
    """The newest suggestion made for a decision, with the agent's verdict on it if any."""

    record: SuggestionRecord
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The agents' verdicts on one intent's drafts from one provider."""

    accepted: int = 0
    edited: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.edited + self.rejected

    @property
    def rate(self) -> float:
        """Share of drafts sent as they were."""
        return self.accepted / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    reserved_tokens: int = 0
    reserved_cost: float = 0.0
    spent_tokens: int = 0
    spent_cost: float = 0.0


class KnowledgeStore(ABC):
    """Raises :class:`deskpilot.errors.StoreError` (:class:`StoreUnavailableError` when unreachable)."""

    @abstractmethod
    def upsert_items(self, items: Sequence[KnowledgeItem]) -> ImportCounts:
        """Add items; one with the (tenant, id) of a stored item replaces it."""

    @abstractmethod
    def kb_items(self, tenant: str | None = None) -> list[KnowledgeItem]:
        """Every stored item (of one tenant), ordered by tenant then id."""

    @abstractmethod
    def kb_counts(self) -> dict[tuple[str, str], int]:
        """Items per (tenant, kind)."""

    @abstractmethod
    def delete_items(self, item_ids: Sequence[str], *, tenant: str | None = None) -> int:
        """Erase items by id (every tenant's, or one tenant's); returns how many went."""

    @abstractmethod
    def write_suggestion(self, record: SuggestionRecord) -> None:
        """Record a suggestion; writing one with the same (tenant, id) again (a retry) keeps the first."""

    @abstractmethod
    def get_suggestion(self, tenant: str, suggestion_id: str) -> SuggestionRecord | None: ...

    @abstractmethod
    def latest_suggestion(self, tenant: str, request_id: str) -> LatestSuggestion | None:
        """The newest suggestion made for the tenant's decision ``request_id`` (the console's ticket page
        shows it instead of drafting again), with its verdict; None when none was made."""

    @abstractmethod
    def add_suggestion_feedback(
        self, tenant: str, suggestion_id: str, verdict: Verdict, edit_distance: int | None
    ) -> SuggestionFeedbackRecord:
        """Record (or replace) the verdict; :class:`StoreNotFoundError` for another tenant's suggestion."""

    @abstractmethod
    def acceptance(self, tenant: str, *, since: datetime | None = None) -> dict[tuple[str, str], Acceptance]:
        """Verdicts per (intent, provider) of one tenant's suggestions."""

    @abstractmethod
    def purge_suggestions(self, before: datetime) -> int:
        """Delete suggestions (and their verdicts) made before ``before``; returns how many."""

    @abstractmethod
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
        """Atomically add a reservation if spent + reserved + it stays within both limits (``None``: no
        limit); ``False`` and nothing changed otherwise."""

    @abstractmethod
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
        """Turn a reservation into what the call actually used (zero for a call that cost nothing)."""

    @abstractmethod
    def budget_usage(self, tenant: str, period: str) -> BudgetUsage: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
