"""The agents' queue in the store: SQLite, PostgreSQL and the in-memory store answer alike, and SQLite reads
it through the partial indexes of migration 0008 without sorting; and the ticket page's other reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from deskpilot.domain import Route
from deskpilot.store import migrate
from deskpilot.store.base import DecisionStore
from deskpilot.store.knowledge import KnowledgeStore, SuggestionRecord
from deskpilot.store.knowledge_memory import InMemoryKnowledgeStore
from deskpilot.store.knowledge_sql import SqlKnowledgeStore
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.queue import Cursor, QueueQuery, count_statement, page_statement
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore

T0 = datetime(2026, 5, 1, 9, 0, 0, 250000, tzinfo=UTC)
CHANNELS = ("email", "chat", "phone", None)
INTENTS = ("card_arrival", "lost_card", "refund")


def record(i: int, tenant: str = "acme", **changes: Any) -> DecisionRecord:
    """Every third decision routed to a person; of the rest every fourth in the audit sample. Decisions
    come in pairs that share one ``created_at``, so that paging must break ties by id."""
    human = i % 3 == 0
    values: dict[str, Any] = {
        "tenant": tenant,
        "request_id": f"req-{i}",
        "model_name": "deskpilot-triage",
        "model_version": "7",
        "intent": INTENTS[i % len(INTENTS)],
        "confidence": round(0.05 + (i % 10) / 10, 2),
        "route": Route.HUMAN if human else Route.AUTO,
        "review_sample": not human and i % 4 == 1,
        "channel": CHANNELS[i % len(CHANNELS)],
        "latency_ms": 2.0,
        "text": f"message {i}",
        "alternatives": (("lost_card", 0.1),),
        "created_at": T0 + timedelta(minutes=i // 2),
    }
    values.update(changes)
    return DecisionRecord(**values)


N = 60
ALL = [record(i) for i in range(N)]


def queued(records: list[DecisionRecord]) -> list[DecisionRecord]:
    return [r for r in records if r.route is Route.HUMAN or r.review_sample]


def newest_first(records: list[DecisionRecord]) -> list[str]:
    """Ids in queue order: written in index order, so a tie in time goes to the later write."""
    order = {r.request_id: n for n, r in enumerate(ALL)}
    ranked = sorted(records, key=lambda r: (r.created_at, order[r.request_id]), reverse=True)
    return [r.request_id for r in ranked]


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionStore]:
    if request.param == "memory":
        found: DecisionStore = InMemoryStore()
    else:
        url = (
            f"sqlite:///{tmp_path / 'store.db'}"
            if request.param == "sqlite"
            else str(request.getfixturevalue("postgres_url"))
        )
        migrate.upgrade(url)
        found = SqlStore(url)
    found.write_decisions([record(i, "globex", intent="lost_card") for i in range(N)])
    found.write_decisions(ALL)
    yield found
    found.close()


def ids(store: DecisionStore, query: QueueQuery, limit: int = 500, tenant: str = "acme") -> list[str]:
    return [row.decision.request_id for row in store.queue_page(tenant, query, limit=limit).rows]


def test_the_queue_holds_human_routes_and_the_audit_sample_newest_first(store: DecisionStore) -> None:
    assert ids(store, QueueQuery()) == newest_first(queued(ALL))
    assert ids(store, QueueQuery(kind="human")) == newest_first([r for r in ALL if r.route is Route.HUMAN])
    assert ids(store, QueueQuery(kind="sampled")) == newest_first([r for r in ALL if r.review_sample])
    page = store.queue_page("acme", QueueQuery(), limit=500)
    assert page.next_cursor is None
    assert all(row.decision.tenant == "acme" and row.verdict is None for row in page.rows)
    assert page.rows[0].decision == next(r for r in ALL if r.request_id == page.rows[0].decision.request_id)


def test_another_tenant_sees_none_of_it(store: DecisionStore) -> None:
    rows = store.queue_page("globex", QueueQuery(), limit=500).rows
    assert {row.decision.tenant for row in rows} == {"globex"}
    assert {row.decision.intent for row in rows} == {"lost_card"}
    assert ids(store, QueueQuery(), tenant="initech") == []
    assert store.queue_count("initech", QueueQuery()) == 0
    store.add_feedback("acme", "req-0", "refund")
    assert store.verdict("globex", "req-0") is None
    assert ids(store, QueueQuery(state="done"), tenant="globex") == []


def test_each_filter(store: DecisionStore) -> None:
    q = queued(ALL)
    assert ids(store, QueueQuery(intent="refund")) == newest_first([r for r in q if r.intent == "refund"])
    assert ids(store, QueueQuery(channel="chat")) == newest_first([r for r in q if r.channel == "chat"])
    expected = [r for r in q if 0.3 <= r.confidence <= 0.65]
    assert ids(store, QueueQuery(min_confidence=0.3, max_confidence=0.65)) == newest_first(expected)
    assert ids(store, QueueQuery(min_confidence=0.85)) == newest_first([r for r in q if r.confidence >= 0.85])
    since = T0 + timedelta(minutes=20)
    assert ids(store, QueueQuery(since=since)) == newest_first([r for r in q if r.created_at >= since])
    both = QueueQuery(intent="card_arrival", channel="email", kind="human", since=since)
    expected = [
        r
        for r in q
        if r.intent == "card_arrival"
        and r.channel == "email"
        and r.route is Route.HUMAN
        and r.created_at >= since
    ]
    assert ids(store, both) == newest_first(expected)
    assert expected
    assert ids(store, QueueQuery(intent="no_such_intent")) == []
    assert ids(store, QueueQuery(channel="fax")) == []


def test_open_done_and_all_follow_the_verdicts(store: DecisionStore) -> None:
    q = newest_first(queued(ALL))
    judged = q[1::4]
    for n, request_id in enumerate(judged):
        store.add_feedback("acme", request_id, "refund" if n % 2 else "__other__")
    assert ids(store, QueueQuery()) == [i for i in q if i not in judged]
    assert ids(store, QueueQuery(state="done")) == judged
    rows = store.queue_page("acme", QueueQuery(state="all"), limit=500).rows
    assert [row.decision.request_id for row in rows] == q
    verdicts = {row.decision.request_id: row.verdict for row in rows if row.verdict is not None}
    assert verdicts == {rid: "refund" if n % 2 else "__other__" for n, rid in enumerate(judged)}
    found = store.verdict("acme", judged[0])
    assert found is not None
    assert found.correct_intent == "__other__"
    assert store.verdict("acme", q[0]) is None
    assert store.queue_count("acme", QueueQuery(state="done")) == len(judged)


def test_keyset_pages_break_ties_and_never_repeat_or_skip(store: DecisionStore) -> None:
    expected = newest_first(queued(ALL))
    seen: list[str] = []
    query = QueueQuery(state="all")
    for _ in range(len(expected)):
        page = store.queue_page("acme", query, limit=3)
        seen += [row.decision.request_id for row in page.rows]
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.rows[-1].cursor
        token = page.next_cursor.encode()
        query = QueueQuery(state="all", after=Cursor.decode(token))
        # a newer decision arriving between pages does not shift the pages that follow
        later = T0 + timedelta(days=1)
        store.write_decisions([record(1000 + len(seen), route=Route.HUMAN, created_at=later)])
    assert seen == expected
    assert len(expected) > 9


def test_a_decisions_position_is_its_cursor_in_the_queue(store: DecisionStore) -> None:
    query = QueueQuery(state="all")
    rows = store.queue_page("acme", query, limit=500).rows
    for row in rows[:5]:
        assert store.queue_position("acme", row.decision.request_id) == row.cursor
    middle = rows[len(rows) // 2]
    after = store.queue_page("acme", QueueQuery(state="all", after=middle.cursor), limit=1).rows
    assert after[0].decision.request_id == rows[len(rows) // 2 + 1].decision.request_id
    theirs = store.queue_position("globex", rows[0].decision.request_id)  # the same id, globex's own
    assert theirs is not None
    assert theirs != rows[0].cursor
    assert store.queue_position("acme", "no-such-decision") is None


def test_an_exact_page_has_no_next_cursor(store: DecisionStore) -> None:
    total = len(queued(ALL))
    assert store.queue_page("acme", QueueQuery(), limit=total).next_cursor is None
    assert store.queue_page("acme", QueueQuery(), limit=total - 1).next_cursor is not None
    with pytest.raises(ValueError, match="rows"):
        store.queue_page("acme", QueueQuery(), limit=0)


def test_the_count_is_capped(store: DecisionStore) -> None:
    total = len(queued(ALL))
    assert store.queue_count("acme", QueueQuery()) == total
    assert store.queue_count("acme", QueueQuery(), cap=5) == 6
    assert store.queue_count("acme", QueueQuery(intent="refund")) == len(
        [r for r in queued(ALL) if r.intent == "refund"]
    )
    after = QueueQuery(after=Cursor(T0, 1))  # the count is of the whole queue, wherever the page is
    assert store.queue_count("acme", after) == total


def test_the_channel_round_trips(store: DecisionStore) -> None:
    assert store.get_decision("acme", "req-1") == ALL[1]
    assert ALL[1].channel == "chat"
    assert store.get_decision("acme", "req-3") == ALL[3]
    assert ALL[3].channel is None


def _plan(conn: sa.Connection, statement: sa.Select[Any]) -> list[str]:
    compiled = statement.compile(conn)
    params = compiled.construct_params()
    processors = compiled._bind_processors
    values = tuple(
        processors[key](params[key]) if key in processors else params[key]
        for key in compiled.positiontup or ()
    )
    return [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), values).all()]


PLANNED = [
    ("ix_decisions_queue", QueueQuery()),
    ("ix_decisions_queue", QueueQuery(state="all", since=T0)),
    ("ix_decisions_queue", QueueQuery(channel="chat", min_confidence=0.5, after=Cursor(T0, 9))),
    ("ix_decisions_queue", QueueQuery(state="done", kind="sampled")),
    ("ix_decisions_queue_intent", QueueQuery(intent="refund")),
    ("ix_decisions_queue_intent", QueueQuery(intent="refund", state="all", after=Cursor(T0, 9))),
]


@pytest.mark.parametrize(("index", "query"), PLANNED)
def test_sqlite_reads_a_page_through_the_partial_index_without_sorting(
    tmp_path: Path, index: str, query: QueueQuery
) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    migrate.upgrade(url)
    sql_store = SqlStore(url)
    sql_store.write_decisions(ALL)
    sql_store.close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")  # statistics as a running store would have them
        plan = _plan(conn, page_statement("acme", query, 50))
        count = _plan(conn, count_statement("acme", query, 10_000))
    engine.dispose()
    assert plan[0].startswith(f"SEARCH decisions USING INDEX {index} ("), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("ix_decisions_queue" in step for step in count), count
    assert not any(step.startswith("SCAN decisions") for step in plan + count), (plan, count)


def test_cursor_tokens_round_trip_and_refuse_anything_else() -> None:
    cursor = Cursor(T0, 123)
    token = cursor.encode()
    assert Cursor.decode(token) == cursor
    assert token.replace("-", "").replace("_", "").isalnum()
    other_zone = datetime(2026, 5, 1, 11, 0, 0, 250000, tzinfo=UTC) + timedelta(hours=0)
    assert Cursor.decode(Cursor(other_zone, 1).encode()).created_at == other_zone
    for bad in ("", "x", "!!!", "bm9wZQ", Cursor(T0, 1).encode() + "A", "a" * 200, "MjAyNnwx"):
        with pytest.raises(ValueError, match="cursor"):
            Cursor.decode(bad)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"state": "closed"}, "state"),
        ({"kind": "auto"}, "kind"),
        ({"min_confidence": -0.1}, "between 0 and 1"),
        ({"max_confidence": 1.5}, "between 0 and 1"),
        ({"min_confidence": float("nan")}, "between 0 and 1"),
        ({"min_confidence": 0.8, "max_confidence": 0.2}, "above the maximum"),
        ({"since": datetime(2026, 1, 1)}, "timezone-aware"),  # naive: refused
    ],
)
def test_a_query_refuses_bad_filters(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        QueueQuery(**changes)


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def knowledge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    if request.param == "memory":
        yield InMemoryKnowledgeStore()
        return
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    migrate.upgrade(url)
    found = SqlKnowledgeStore(url)
    yield found
    found.close()


def suggestion(n: int, request_id: str | None, tenant: str = "acme", minutes: int = 0) -> SuggestionRecord:
    return SuggestionRecord(
        tenant=tenant,
        suggestion_id=f"s-{n}",
        request_id=request_id,
        intent="refund",
        route="human",
        draft=f"draft {n} [1]",
        reason="grounded draft",
        provider="extractive",
        prompt_version="reply-v1",
        citations=(1,),
        sources=({"number": 1, "id": "kb-1", "kind": "article", "score": 0.5},),
        created_at=T0 + timedelta(minutes=minutes),
    )


def test_the_latest_suggestion_of_a_ticket_comes_with_its_verdict(knowledge: KnowledgeStore) -> None:
    knowledge.write_suggestion(suggestion(1, "req-1", minutes=1))
    knowledge.write_suggestion(suggestion(2, "req-1", minutes=5))
    knowledge.write_suggestion(suggestion(3, "req-1", minutes=3))
    knowledge.write_suggestion(suggestion(4, "req-1", tenant="globex", minutes=9))
    knowledge.write_suggestion(suggestion(5, None, minutes=9))
    latest = knowledge.latest_suggestion("acme", "req-1")
    assert latest is not None
    assert latest.record == suggestion(2, "req-1", minutes=5)
    assert latest.verdict is None
    knowledge.add_suggestion_feedback("acme", "s-2", "edited", 4)
    latest = knowledge.latest_suggestion("acme", "req-1")
    assert latest is not None
    assert latest.verdict == "edited"
    assert knowledge.latest_suggestion("acme", "req-2") is None
    assert knowledge.latest_suggestion("initech", "req-1") is None
    other = knowledge.latest_suggestion("globex", "req-1")
    assert other is not None
    assert other.record.suggestion_id == "s-4"
