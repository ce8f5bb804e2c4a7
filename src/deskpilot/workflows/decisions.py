"""Trace one id through the decision log: an HTTP request to the decisions it produced, and back.

Two ids meet here. The HTTP request id is the middleware's (``X-Request-ID``, the access log's
``request_id``); the decision id is each ticket's own (the API's ``request_id``, the feedback key). An
operator holding either one gets the whole request: every decision it produced, across tenants.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deskpilot.config import Settings
from deskpilot.errors import StoreNotFoundError, UsageError
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import DecisionRecord
from deskpilot.workflows.build import existing_store_url


class IdKind(StrEnum):
    """What a traced id turned out to be."""

    HTTP_REQUEST = "http_request"
    DECISION = "decision"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionTrace:
    """The decisions one id leads to, oldest first.

    ``matched_as`` says how the id was found: as an HTTP request id, a decision id, or (since a caller
    chooses its own ``X-Request-ID``) both. ``decisions`` is the whole chain: for an HTTP request id its
    decisions; for a decision id the decision and its siblings, the other decisions of the same HTTP
    request in the same tenant.
    """

    identifier: str
    matched_as: tuple[IdKind, ...]
    decisions: tuple[DecisionRecord, ...]

    @property
    def http_request_ids(self) -> tuple[str, ...]:
        """The HTTP requests behind the decisions, in order of first appearance; empty when every one of
        them was logged without (before the store recorded it, or outside the API)."""
        seen = (d.http_request_id for d in self.decisions if d.http_request_id is not None)
        return tuple(dict.fromkeys(seen))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.identifier,
            "matched_as": [kind.value for kind in self.matched_as],
            "http_request_ids": list(self.http_request_ids),
            "decisions": [_decision_dict(d) for d in self.decisions],
        }


def trace_in_store(settings: Settings, identifier: str) -> DecisionTrace:
    """:func:`trace` in the store the settings point at (a missing SQLite store is an error, not empty)."""
    from deskpilot.store.sql import SqlStore

    store = SqlStore(existing_store_url(settings, "nothing was served here yet"))
    try:
        return trace(store, identifier)
    finally:
        store.close()


def trace(store: DecisionStore, identifier: str) -> DecisionTrace:
    """Look ``identifier`` up as an HTTP request id and as a decision id; :class:`StoreNotFoundError`
    when it is neither."""
    identifier = identifier.strip()
    if not identifier:
        raise UsageError("give an HTTP request id or a decision id to trace")
    by_request = store.decisions_for_http_request(identifier)
    by_id = store.find_decision(identifier)
    if not by_request and not by_id:
        raise StoreNotFoundError(
            f"no decision has the id {identifier!r} and no HTTP request with that id logged any",
            details={"id": identifier},
        )
    chain = {(d.tenant, d.request_id): d for d in by_request}
    for decision in by_id:
        chain[(decision.tenant, decision.request_id)] = decision
        if decision.http_request_id is None or decision.http_request_id == identifier:
            continue  # no siblings to find, or found above already
        # The tenant too: another tenant's request may have sent the same X-Request-ID.
        for sibling in store.decisions_for_http_request(decision.http_request_id, tenant=decision.tenant):
            chain.setdefault((sibling.tenant, sibling.request_id), sibling)
    kinds = [kind for kind, found in ((IdKind.HTTP_REQUEST, by_request), (IdKind.DECISION, by_id)) if found]
    ordered = sorted(chain.values(), key=lambda d: (d.created_at, d.tenant, d.request_id))
    return DecisionTrace(identifier=identifier, matched_as=tuple(kinds), decisions=tuple(ordered))


def _decision_dict(decision: DecisionRecord) -> dict[str, Any]:
    """A decision without its text: a trace is about where a decision came from, not what it said."""
    return {
        "decision_id": decision.request_id,
        "http_request_id": decision.http_request_id,
        "tenant": decision.tenant,
        "ticket_id": decision.ticket_id,
        "intent": decision.intent,
        "confidence": decision.confidence,
        "route": decision.route.value,
        "model_name": decision.model_name,
        "model_version": decision.model_version,
        "fallback": decision.fallback,
        "reason": decision.reason,
        "latency_ms": decision.latency_ms,
        "created_at": decision.created_at.isoformat(),
    }
