"""The trace use case on the in-memory store: from an HTTP request id to its decisions, and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from deskpilot.domain import Route
from deskpilot.errors import StoreNotFoundError, UsageError
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord
from deskpilot.workflows.decisions import DecisionTrace, IdKind, trace

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def decision(
    request_id: str, http_request_id: str | None, tenant: str = "acme", at: int = 0
) -> DecisionRecord:
    return DecisionRecord(
        tenant=tenant,
        request_id=request_id,
        ticket_id=f"T-{request_id}",
        model_name="deskpilot-triage",
        model_version="3",
        intent="card_arrival",
        confidence=0.75,
        route=Route.AUTO,
        latency_ms=2.0,
        text="where is my card",
        http_request_id=http_request_id,
        created_at=T0 + timedelta(seconds=at),
    )


@pytest.fixture
def store() -> InMemoryStore:
    memory = InMemoryStore()
    memory.write_decisions(
        [
            decision("d2", "http-1", at=2),
            decision("d1", "http-1", at=1),
            decision("d3", "http-2", at=3),
            decision("g1", "http-1", tenant="globex", at=4),  # globex chose the same X-Request-ID
            decision("old", None, at=0),  # logged before the store kept the HTTP request id
        ]
    )
    return memory


def ids(found: DecisionTrace) -> list[tuple[str, str]]:
    return [(d.tenant, d.request_id) for d in found.decisions]


def test_an_http_request_id_leads_to_every_decision_it_produced(store: InMemoryStore) -> None:
    found = trace(store, "http-1")
    assert found.matched_as == (IdKind.HTTP_REQUEST,)
    assert ids(found) == [("acme", "d1"), ("acme", "d2"), ("globex", "g1")]
    assert found.http_request_ids == ("http-1",)


def test_a_decision_id_leads_to_its_http_request_and_siblings_of_its_tenant(store: InMemoryStore) -> None:
    found = trace(store, " d2 ")
    assert found.identifier == "d2"
    assert found.matched_as == (IdKind.DECISION,)
    assert found.http_request_ids == ("http-1",)
    assert ids(found) == [("acme", "d1"), ("acme", "d2")]  # not globex's request of the same id
    alone = trace(store, "d3")
    assert ids(alone) == [("acme", "d3")]


def test_a_decision_logged_without_an_http_request_id_is_found_alone(store: InMemoryStore) -> None:
    found = trace(store, "old")
    assert ids(found) == [("acme", "old")]
    assert found.http_request_ids == ()


def test_an_id_that_is_both_kinds_gets_both_chains(store: InMemoryStore) -> None:
    store.write_decisions([decision("http-2", "http-9", tenant="initech", at=9)])
    found = trace(store, "http-2")
    assert found.matched_as == (IdKind.HTTP_REQUEST, IdKind.DECISION)
    assert ids(found) == [("acme", "d3"), ("initech", "http-2")]
    assert found.http_request_ids == ("http-2", "http-9")


def test_the_dict_is_json_without_the_text(store: InMemoryStore) -> None:
    payload = trace(store, "d1").to_dict()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["id"] == "d1"
    assert payload["matched_as"] == ["decision"]
    assert payload["http_request_ids"] == ["http-1"]
    first = payload["decisions"][0]
    assert first["decision_id"] == "d1"
    assert first["http_request_id"] == "http-1"
    assert first["route"] == "auto"
    assert first["created_at"] == "2026-05-01T09:00:01+00:00"
    assert "text" not in first


def test_an_unknown_or_empty_id_is_an_error(store: InMemoryStore) -> None:
    with pytest.raises(StoreNotFoundError, match="nope") as unknown:
        trace(store, "nope")
    assert unknown.value.code == "not_found"
    with pytest.raises(UsageError):
        trace(store, "  ")
