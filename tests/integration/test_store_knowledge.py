"""The copilot's store on a real database (SQLite file, PostgreSQL), and the in-memory store on the same
contract: knowledge items, suggestions with verdicts, and the LLM budget ledger under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deskpilot.copilot.budget_store import StoreBudgetLedger
from deskpilot.copilot.gateway.config import BudgetLimit
from deskpilot.errors import StoreNotFoundError
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.store import migrate
from deskpilot.store.knowledge import Acceptance, BudgetUsage, ImportCounts, KnowledgeStore, SuggestionRecord
from deskpilot.store.knowledge_memory import InMemoryKnowledgeStore
from deskpilot.store.knowledge_sql import SqlKnowledgeStore

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    """The SQL store on each database the ``url`` fixture offers, and the in-memory store on one contract."""
    if request.param == "memory":
        yield InMemoryKnowledgeStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    migrate.upgrade(url)
    sql = SqlKnowledgeStore(url)
    yield sql
    sql.close()


def article(id_: str, tenant: str = "acme", **changes: object) -> KnowledgeItem:
    values: dict[str, object] = {
        "id": id_,
        "tenant": tenant,
        "kind": "article",
        "text": f"How {id_} works. Ünïcode ✓.",
        "title": f"About {id_}",
        "intents": ("card_arrival", "card_delivery_estimate"),
        "source": "help-center.md",
    }
    values.update(changes)
    return KnowledgeItem(**values)  # type: ignore[arg-type]


def ticket(id_: str, tenant: str = "acme", **changes: object) -> KnowledgeItem:
    values: dict[str, object] = {
        "id": id_,
        "tenant": tenant,
        "kind": "ticket",
        "text": f"where is my card <EMAIL> {id_}",
        "intents": ("card_arrival",),
        "reply": "It arrives within 5 working days.",
        "source": "tickets.csv",
    }
    values.update(changes)
    return KnowledgeItem(**values)  # type: ignore[arg-type]


def suggestion(n: int, tenant: str = "acme", **changes: object) -> SuggestionRecord:
    values: dict[str, object] = {
        "tenant": tenant,
        "suggestion_id": f"s-{n}",
        "request_id": f"req-{n}",
        "intent": "card_arrival",
        "route": "auto",
        "draft": "Cards arrive within 5 working days [1].",
        "reason": "grounded draft from the cited sources",
        "provider": "extractive",
        "prompt_version": "reply-v1",
        "model": None,
        "index_version": 3,
        "citations": (1, 3),
        "sources": (
            {"id": "card-arrival", "kind": "article", "score": 0.03125},
            {"id": "refunds", "kind": "article", "score": 0.015625},
            {"id": "T-9", "kind": "ticket", "score": 0.0078125},
        ),
        "flags": ("truncated", "pii_redacted"),
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cost_usd": 0.00125,
        "latency_ms": 12.5,
        "created_at": T0 + timedelta(minutes=n),
    }
    values.update(changes)
    return SuggestionRecord(**values)  # type: ignore[arg-type]


# -- knowledge items ---------------------------------------------------------------------------------------


def test_upsert_counts_added_replaced_unchanged_and_the_last_duplicate_wins(store: KnowledgeStore) -> None:
    first = store.upsert_items([article("a"), ticket("t1"), article("b"), article("a", text="second a")])
    assert first == ImportCounts(added=3, replaced=0, unchanged=0)
    assert store.kb_items("acme")[0].text == "second a"
    again = store.upsert_items(
        [article("a", text="second a"), ticket("t1", reply="Now 3 days."), article("c"), article("b")]
    )
    assert again == ImportCounts(added=1, replaced=1, unchanged=2)
    assert again.to_dict() == {"added": 1, "replaced": 1, "unchanged": 2}
    assert {i.id: i.reply for i in store.kb_items("acme")}["t1"] == "Now 3 days."
    assert store.upsert_items([]) == ImportCounts()


def test_items_round_trip_field_for_field_in_tenant_then_id_order(store: KnowledgeStore) -> None:
    items = [
        ticket("t2", "zeta"),
        article("b"),
        ticket("t1", reply=None, intents=()),
        article("a", title=None, intents=()),
        article("a", "beta"),
    ]
    store.upsert_items(items)
    everything = store.kb_items()
    assert [(i.tenant, i.id) for i in everything] == [
        ("acme", "a"),
        ("acme", "b"),
        ("acme", "t1"),
        ("beta", "a"),
        ("zeta", "t2"),
    ]
    assert sorted(everything, key=lambda i: (i.tenant, i.id)) == sorted(items, key=lambda i: (i.tenant, i.id))
    assert [i.id for i in store.kb_items("acme")] == ["a", "b", "t1"]
    assert store.kb_items("nobody") == []
    assert store.kb_counts() == {
        ("acme", "article"): 2,
        ("acme", "ticket"): 1,
        ("beta", "article"): 1,
        ("zeta", "ticket"): 1,
    }


def test_the_same_id_in_two_tenants_is_two_items(store: KnowledgeStore) -> None:
    counts = store.upsert_items([article("a"), article("a", "beta", text="beta's a")])
    assert counts.added == 2
    assert store.kb_items("beta")[0].text == "beta's a"
    assert store.kb_items("acme")[0].text == "How a works. Ünïcode ✓."


def test_delete_items_by_id_for_one_tenant_or_all(store: KnowledgeStore) -> None:
    store.upsert_items([article("a"), article("b"), article("a", "beta"), article("b", "beta")])
    assert store.delete_items(["a", "missing"], tenant="acme") == 1
    assert [(i.tenant, i.id) for i in store.kb_items()] == [("acme", "b"), ("beta", "a"), ("beta", "b")]
    assert store.delete_items(["b"]) == 2
    assert [(i.tenant, i.id) for i in store.kb_items()] == [("beta", "a")]
    assert store.delete_items([]) == 0


# -- suggestions and verdicts ------------------------------------------------------------------------------


def test_a_suggestion_round_trips_field_for_field(store: KnowledgeStore) -> None:
    full = suggestion(1)
    declined = suggestion(
        2, draft=None, citations=(), sources=(), flags=(), reason="no grounded answer: route to a person",
        request_id=None, index_version=None, model="gpt-4o-mini", cost_usd=0.0,
    )  # fmt: skip
    store.write_suggestion(full)
    store.write_suggestion(declined)
    assert store.get_suggestion("acme", "s-1") == full
    assert store.get_suggestion("acme", "s-2") == declined
    found = store.get_suggestion("acme", "s-1")
    assert found is not None
    assert isinstance(found.citations, tuple)
    assert isinstance(found.sources, tuple)
    assert isinstance(found.flags, tuple)
    assert found.sources[0] == {"id": "card-arrival", "kind": "article", "score": 0.03125}
    assert found.created_at == T0 + timedelta(minutes=1)
    assert store.get_suggestion("beta", "s-1") is None
    assert store.get_suggestion("acme", "s-404") is None


def test_writing_a_suggestion_again_keeps_the_first(store: KnowledgeStore) -> None:
    store.write_suggestion(suggestion(1))
    store.write_suggestion(suggestion(1, draft="a retry"))
    found = store.get_suggestion("acme", "s-1")
    assert found is not None
    assert found.draft == suggestion(1).draft


def test_a_second_verdict_replaces_the_first(store: KnowledgeStore) -> None:
    store.write_suggestion(suggestion(1, provider="openai"))
    first = store.add_suggestion_feedback("acme", "s-1", "rejected", None)
    assert (first.intent, first.provider, first.verdict) == ("card_arrival", "openai", "rejected")
    second = store.add_suggestion_feedback("acme", "s-1", "edited", 14)
    assert second.edit_distance == 14
    assert store.acceptance("acme") == {("card_arrival", "openai"): Acceptance(edited=1)}


def test_a_verdict_on_another_tenants_or_an_unknown_suggestion_is_not_found(store: KnowledgeStore) -> None:
    store.write_suggestion(suggestion(1))
    with pytest.raises(StoreNotFoundError):
        store.add_suggestion_feedback("beta", "s-1", "accepted", None)
    with pytest.raises(StoreNotFoundError):
        store.add_suggestion_feedback("acme", "s-404", "accepted", None)
    assert store.acceptance("acme") == {}
    assert store.acceptance("beta") == {}


def test_acceptance_groups_verdicts_by_intent_and_provider_per_tenant(store: KnowledgeStore) -> None:
    plan = [
        ("acme", "card_arrival", "extractive", "accepted"),
        ("acme", "card_arrival", "extractive", "accepted"),
        ("acme", "card_arrival", "extractive", "edited"),
        ("acme", "card_arrival", "openai", "rejected"),
        ("acme", "lost_card", "extractive", "accepted"),
        ("beta", "card_arrival", "extractive", "rejected"),
    ]
    for n, (tenant, intent, provider, verdict) in enumerate(plan):
        store.write_suggestion(suggestion(n, tenant, intent=intent, provider=provider))
        store.add_suggestion_feedback(tenant, f"s-{n}", verdict, 3 if verdict == "edited" else None)  # type: ignore[arg-type]
    store.write_suggestion(suggestion(99))  # no verdict: not counted
    acme = store.acceptance("acme")
    assert acme == {
        ("card_arrival", "extractive"): Acceptance(accepted=2, edited=1),
        ("card_arrival", "openai"): Acceptance(rejected=1),
        ("lost_card", "extractive"): Acceptance(accepted=1),
    }
    assert acme[("card_arrival", "extractive")].rate == pytest.approx(2 / 3)
    assert store.acceptance("beta") == {("card_arrival", "extractive"): Acceptance(rejected=1)}
    future = datetime.now(UTC) + timedelta(days=1)
    assert store.acceptance("acme", since=future) == {}
    assert store.acceptance("acme", since=datetime(2000, 1, 1, tzinfo=UTC)) == acme


def test_purge_removes_old_suggestions_and_their_verdicts(store: KnowledgeStore) -> None:
    for n in range(4):
        store.write_suggestion(suggestion(n, "acme" if n % 2 else "beta"))
        store.add_suggestion_feedback("acme" if n % 2 else "beta", f"s-{n}", "accepted", None)
    assert store.purge_suggestions(T0 + timedelta(minutes=2)) == 2  # s-0 (beta) and s-1 (acme)
    assert store.get_suggestion("beta", "s-0") is None
    assert store.get_suggestion("acme", "s-1") is None
    assert store.get_suggestion("beta", "s-2") is not None
    assert store.acceptance("acme") == {("card_arrival", "extractive"): Acceptance(accepted=1)}
    assert store.acceptance("beta") == {("card_arrival", "extractive"): Acceptance(accepted=1)}
    assert store.purge_suggestions(T0) == 0


# -- the LLM budget ledger ---------------------------------------------------------------------------------


def test_a_reservation_within_the_limit_succeeds_and_one_beyond_changes_nothing(
    store: KnowledgeStore,
) -> None:
    assert store.budget_usage("acme", "2026-03") == BudgetUsage()
    assert store.reserve_budget("acme", "2026-03", 600, 0.5, max_tokens=1000, max_cost_usd=1.0)
    assert store.reserve_budget(
        "acme", "2026-03", 400, 0.25, max_tokens=1000, max_cost_usd=1.0
    )  # exactly full
    before = store.budget_usage("acme", "2026-03")
    assert before == BudgetUsage(reserved_tokens=1000, reserved_cost=0.75)
    assert not store.reserve_budget("acme", "2026-03", 1, 0.0, max_tokens=1000, max_cost_usd=1.0)
    assert not store.reserve_budget("acme", "2026-03", 0, 0.5, max_tokens=None, max_cost_usd=1.0)
    assert store.budget_usage("acme", "2026-03") == before
    assert store.reserve_budget("acme", "2026-03", 10_000, 0.0, max_tokens=None, max_cost_usd=None)
    assert store.budget_usage("beta", "2026-03") == BudgetUsage()
    assert store.budget_usage("acme", "2026-04") == BudgetUsage()


def test_settle_moves_reserved_to_spent_and_never_goes_negative(store: KnowledgeStore) -> None:
    assert store.reserve_budget("acme", "p", 500, 0.5, max_tokens=1000, max_cost_usd=None)
    store.settle_budget("acme", "p", reserved_tokens=500, reserved_cost=0.5, used_tokens=120, used_cost=0.125)
    assert store.budget_usage("acme", "p") == BudgetUsage(spent_tokens=120, spent_cost=0.125)
    store.settle_budget("acme", "p", reserved_tokens=300, reserved_cost=0.3, used_tokens=0, used_cost=0.0)
    assert store.budget_usage("acme", "p") == BudgetUsage(spent_tokens=120, spent_cost=0.125)
    store.settle_budget("beta", "p", reserved_tokens=10, reserved_cost=0.1, used_tokens=7, used_cost=0.0625)
    assert store.budget_usage("beta", "p") == BudgetUsage(spent_tokens=7, spent_cost=0.0625)
    assert store.reserve_budget("acme", "p", 880, 0.0, max_tokens=1000, max_cost_usd=None)
    assert not store.reserve_budget("acme", "p", 1, 0.0, max_tokens=1000, max_cost_usd=None)


def test_the_gateway_ledger_reads_and_writes_through_the_store(store: KnowledgeStore) -> None:
    ledger = StoreBudgetLedger(store)
    limit = BudgetLimit(tokens=1000, cost_usd=None)
    assert ledger.reserve("acme", "p", 800, 0.0, limit)
    assert not ledger.reserve("acme", "p", 201, 0.0, limit)
    ledger.settle("acme", "p", 800, 0.0, 150, 0.25)
    usage = ledger.usage("acme", "p")
    assert (usage.spent_tokens, usage.spent_cost_usd, usage.reserved_tokens, usage.reserved_cost_usd) == (
        150,
        0.25,
        0,
        0.0,
    )


WORKERS = 8
EACH = 70
LIMIT = 1000  # floor(1000 / 70) = 14 reservations fit


def test_concurrent_reservations_through_separate_stores_never_pass_the_limit(url: str) -> None:
    migrate.upgrade(url)
    stores = [SqlKnowledgeStore(url, busy_timeout_s=30) for _ in range(WORKERS)]
    granted = [0] * WORKERS
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def reserve(worker: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                if stores[worker].reserve_budget("acme", "p", EACH, 0.0, max_tokens=LIMIT, max_cost_usd=None):
                    granted[worker] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reserve, args=(w,)) for w in range(WORKERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        usage = stores[0].budget_usage("acme", "p")
        assert sum(granted) == LIMIT // EACH
        assert usage.reserved_tokens + usage.spent_tokens == EACH * (LIMIT // EACH) <= LIMIT
    finally:
        for one in stores:
            one.close()


def test_the_memory_ledger_holds_under_threads_too() -> None:
    store = InMemoryKnowledgeStore()
    granted: list[bool] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(5):
            ok = store.reserve_budget("acme", "p", EACH, 0.0, max_tokens=LIMIT, max_cost_usd=None)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=reserve) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(granted) == LIMIT // EACH
    assert store.budget_usage("acme", "p").reserved_tokens == EACH * (LIMIT // EACH)
