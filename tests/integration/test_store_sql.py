"""The SQL store on a real database, SQLite (a temporary file) and PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from deskpilot.domain import Route
from deskpilot.errors import StoreError, StoreNotFoundError, StoreUnavailableError
from deskpilot.store import migrate
from deskpilot.store.base import DecisionStore
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord, ShadowRecord
from deskpilot.store.sql import SqlStore
from deskpilot.store.tables import VERSION_TABLE, metadata
from deskpilot.store.writer import BufferedWriter

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(i: int, tenant: str = "acme", **changes: object) -> DecisionRecord:
    values: dict[str, object] = {
        "tenant": tenant,
        "request_id": f"req-{i}",
        "ticket_id": f"T-{i}" if i % 2 else None,
        "model_name": "deskpilot-triage",
        "model_version": "4",
        "intent": "card_arrival",
        "confidence": 0.8125 + i / 1e6,
        "route": Route.AUTO if i % 3 else Route.HUMAN,
        "alternatives": (("lost_card", 0.125), ("card_delivery_estimate", 0.0625)),
        "latency_ms": 3.25,
        "text": f"where is my card [EMAIL] ünïcode {i}",
        "fallback": i % 5 == 0,
        "reason": "below threshold" if i % 3 == 0 else "",
        "created_at": T0 + timedelta(seconds=i),
    }
    values.update(changes)
    return DecisionRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    migrate.upgrade(url)
    sql_store = SqlStore(url)
    yield sql_store
    sql_store.close()


def test_a_decision_round_trips_field_for_field(store: SqlStore) -> None:
    records = [record(i) for i in range(6)]
    store.write_decisions(records)
    for original in records:
        assert store.get_decision("acme", original.request_id) == original
    assert store.get_decision("acme", "req-404") is None


def test_decisions_page_newest_first(store: SqlStore) -> None:
    store.write_decisions([record(i) for i in range(10)])
    first, second = store.decisions("acme", limit=4), store.decisions("acme", limit=4, offset=4)
    assert [r.request_id for r in first + second] == [f"req-{i}" for i in range(9, 1, -1)]
    with pytest.raises(ValueError, match="limit"):
        store.decisions("acme", limit=-1)


def test_every_read_is_scoped_to_its_tenant(store: SqlStore) -> None:
    store.write_decisions([record(1, "acme"), record(2, "acme"), record(1, "globex", intent="lost_card")])
    assert store.get_decision("globex", "req-2") is None
    assert store.get_decision("globex", "req-1").intent == "lost_card"  # type: ignore[union-attr]
    assert store.get_decision("acme", "req-1").intent == "card_arrival"  # type: ignore[union-attr]
    assert {r.tenant for r in store.decisions("globex")} == {"globex"}
    assert len(store.decisions("acme")) == 2
    assert store.decisions("initech") == []

    store.add_feedback("acme", "req-1", "lost_card")
    assert store.feedback("globex") == []
    assert [f.tenant for f in store.feedback("acme")] == ["acme"]


def traced_records() -> list[DecisionRecord]:
    """Two HTTP requests of acme, one of globex that chose the same X-Request-ID, a decision logged without
    one, and a decision id that two tenants share; written newest first so that order comes from the time."""
    return [
        record(6, "globex", http_request_id="http-a"),
        record(5, http_request_id="http-b"),
        record(4),
        record(3, "globex"),
        record(2, http_request_id="http-a"),
        record(1, http_request_id="http-a"),
        record(3, http_request_id="http-b"),
    ]


def trace_reads(store: DecisionStore) -> dict[str, list[tuple[str, str]]]:
    """Every trace read of :func:`traced_records`, as (tenant, request id) in the order returned."""

    def keys(found: list[DecisionRecord]) -> list[tuple[str, str]]:
        return [(r.tenant, r.request_id) for r in found]

    return {
        "http-a": keys(store.decisions_for_http_request("http-a")),
        "http-a acme": keys(store.decisions_for_http_request("http-a", tenant="acme")),
        "http-a globex": keys(store.decisions_for_http_request("http-a", tenant="globex")),
        "http-a initech": keys(store.decisions_for_http_request("http-a", tenant="initech")),
        "http-b": keys(store.decisions_for_http_request("http-b")),
        "http-404": keys(store.decisions_for_http_request("http-404")),
        "req-3": keys(store.find_decision("req-3")),
        "req-4": keys(store.find_decision("req-4")),
        "req-404": keys(store.find_decision("req-404")),
        "http-a as a decision id": keys(store.find_decision("http-a")),
    }


EXPECTED_TRACE_READS = {
    "http-a": [("acme", "req-1"), ("acme", "req-2"), ("globex", "req-6")],
    "http-a acme": [("acme", "req-1"), ("acme", "req-2")],
    "http-a globex": [("globex", "req-6")],
    "http-a initech": [],
    "http-b": [("acme", "req-3"), ("acme", "req-5")],
    "http-404": [],
    "req-3": [("globex", "req-3"), ("acme", "req-3")],  # equal times: the order written
    "req-4": [("acme", "req-4")],
    "req-404": [],
    "http-a as a decision id": [],
}


def test_the_http_request_id_round_trips_and_leads_to_its_decisions(store: SqlStore) -> None:
    records = traced_records()
    store.write_decisions(records)
    for original in records:
        assert store.get_decision(original.tenant, original.request_id) == original
    assert store.get_decision("acme", "req-1").http_request_id == "http-a"  # type: ignore[union-attr]
    assert store.get_decision("acme", "req-4").http_request_id is None  # type: ignore[union-attr]
    assert trace_reads(store) == EXPECTED_TRACE_READS
    (found,) = store.find_decision("req-4")
    assert found == records[2]


def test_the_memory_store_traces_like_the_sql_store(store: SqlStore) -> None:
    memory = InMemoryStore()
    for target in (store, memory):
        target.write_decisions(traced_records())
    assert trace_reads(memory) == trace_reads(store) == EXPECTED_TRACE_READS
    assert memory.decisions_for_http_request("http-a") == store.decisions_for_http_request("http-a")
    assert memory.find_decision("req-3") == store.find_decision("req-3")


def test_a_store_at_0003_keeps_its_rows_through_0004_and_back(url: str) -> None:
    assert migrate.upgrade(url, "0003") == "0003"
    engine = sa.create_engine(migrate.parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO decisions (tenant, request_id, ticket_id, model_name, model_version, "
                    "intent, confidence, route, alternatives, latency_ms, text, fallback, reason, created_at)"
                    " VALUES ('acme', 'req-1', 'T-1', 'deskpilot-triage', '4', 'card_arrival', 0.8125, "
                    "'auto', '[]', 3.25, 'where is my card', false, '', :at)"
                ),
                {"at": T0.replace(tzinfo=None)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO feedback (tenant, request_id, correct_intent, predicted_intent, "
                    "model_version, created_at) "
                    "VALUES ('acme', 'req-1', 'lost_card', 'card_arrival', '4', :at)"
                ),
                {"at": T0.replace(tzinfo=None)},
            )
        assert migrate.upgrade(url) == migrate.head_revision()
        store = SqlStore(url)
        try:
            kept = store.get_decision("acme", "req-1")
            assert kept is not None
            assert (kept.intent, kept.ticket_id, kept.created_at) == ("card_arrival", "T-1", T0)
            assert kept.http_request_id is None
            assert [f.correct_intent for f in store.feedback("acme")] == ["lost_card"]
            assert store.find_decision("req-1") == [kept]
            assert store.decisions_for_http_request("req-1") == []
        finally:
            store.close()
        # Down again: the column goes, and neither the decision nor its feedback goes with it.
        assert migrate.downgrade(url, "0003") == "0003"
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("decisions")}
            assert "http_request_id" not in columns
            assert conn.execute(sa.text("SELECT count(*) FROM decisions")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar() == 1
    finally:
        engine.dispose()


def test_feedback_on_an_unknown_or_another_tenants_request_is_not_found(store: SqlStore) -> None:
    store.write_decisions([record(1, "acme")])
    with pytest.raises(StoreNotFoundError) as unknown:
        store.add_feedback("acme", "req-404", "lost_card")
    with pytest.raises(StoreNotFoundError) as foreign:
        store.add_feedback("globex", "req-1", "lost_card")
    assert unknown.value.code == foreign.value.code == "not_found"
    assert "req-1" not in str(unknown.value)
    assert "req-404" not in str(foreign.value)
    assert str(foreign.value).replace("req-1", "X") == str(unknown.value).replace("req-404", "X")
    assert store.feedback("acme") == []
    assert store.feedback("globex") == []


def test_a_second_verdict_replaces_the_first(store: SqlStore) -> None:
    store.write_decisions([record(1), record(2)])
    first = store.add_feedback("acme", "req-1", "lost_card")
    other = store.add_feedback("acme", "req-2", "card_arrival")
    again = store.add_feedback("acme", "req-1", "card_swallowed")
    assert (first.predicted_intent, first.model_version, first.correct) == ("card_arrival", "4", False)
    assert other.correct
    assert again.created_at >= other.created_at >= first.created_at
    stored = store.feedback("acme")
    assert stored == [other, again]  # one per request, oldest first, the replacement at its new time
    assert store.feedback("acme", since=again.created_at) == [again]
    assert store.feedback("acme", limit=1) == [other]


def test_rewriting_a_batch_is_idempotent(store: SqlStore) -> None:
    batch = [record(i) for i in range(5)]
    store.write_decisions(batch)
    store.write_decisions(batch)  # a flush retried after a lost acknowledgement
    store.write_decisions([record(2, intent="changed"), record(5), record(5)])  # duplicate inside a batch
    stored = store.decisions("acme")
    assert len(stored) == 6
    assert store.get_decision("acme", "req-2") == batch[2]  # the first write wins
    store.write_decisions([])


def test_concurrent_writers_from_threads(store: SqlStore) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(20):
                # Every worker also rewrites an overlapping range, as retried batches would.
                store.write_decisions([record(worker * 100 + n * 5 + k) for k in range(5)])
                store.write_decisions([record(n * 5 + k) for k in range(5)])
        except BaseException as error:  # collected for the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [r.request_id for r in store.decisions("acme", limit=10_000)]
    assert len(ids) == len(set(ids)) == 4 * 100 + 100


def test_an_unmigrated_or_outdated_schema_asks_for_a_migration(url: str) -> None:
    store = SqlStore(url)  # constructing never connects
    try:
        for call in (store.ping, lambda: store.write_decisions([record(1)]), lambda: store.decisions("acme")):
            with pytest.raises(StoreError, match="deskpilot store migrate") as raised:
                call()
            assert type(raised.value) is StoreError
            assert raised.value.details["expected"] == migrate.head_revision()
        migrate.upgrade(url)
        store.ping()
        store.write_decisions([record(1)])
        migrate.downgrade(url, "base")
        with pytest.raises(StoreError, match="deskpilot store migrate"):
            store.ping()
    finally:
        store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_url(url: str, tmp_path: Path) -> str:
    if url.startswith("sqlite"):
        gone = tmp_path / "gone"
        gone.mkdir()
        shutil.rmtree(gone)  # root ignores permissions, so a removed directory stands for a lost disk
        return f"sqlite:///{gone / 'store.db'}"
    return f"postgresql+psycopg://deskpilot:secret@127.0.0.1:{_closed_port()}/deskpilot_test"


def test_an_unreachable_database_raises_store_unavailable(unreachable_url: str) -> None:
    store = SqlStore(unreachable_url, connect_timeout_s=2)
    calls = [
        store.ping,
        lambda: store.write_decisions([record(1)]),
        lambda: store.get_decision("acme", "req-1"),
        lambda: store.decisions("acme"),
        lambda: store.add_feedback("acme", "req-1", "lost_card"),
        lambda: store.feedback("acme"),
        lambda: store.decisions_for_http_request("http-1"),
        lambda: store.find_decision("req-1"),
    ]
    try:
        for call in calls:
            with pytest.raises(StoreUnavailableError) as raised:
                call()
            assert raised.value.code == "store_unavailable"
            assert "secret" not in str(raised.value)
            assert "secret" not in str(raised.value.details)
    finally:
        store.close()


def test_the_writer_buffers_until_the_schema_exists_then_flushes(url: str) -> None:
    store = SqlStore(url)
    writer = BufferedWriter(store, batch_size=16, flush_interval_s=0, retry_backoff_s=(0.01, 0.05))
    try:
        for i in range(40):
            assert writer.submit(record(i))
        assert not writer.flush(timeout=0.3)
        assert not writer.healthy
        migrate.upgrade(url)  # the operator runs the migration: the store is back
        assert writer.flush(timeout=10)
        assert writer.healthy
        assert len(store.decisions("acme")) == 40
    finally:
        writer.close(timeout=5)
        store.close()


def test_migrations_downgrade_and_upgrade_cleanly_and_match_the_tables(url: str) -> None:
    assert migrate.current(url) is None
    assert migrate.upgrade(url) == migrate.head_revision()
    engine = sa.create_engine(migrate.parse_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
            assert {"decisions", "feedback", VERSION_TABLE} <= set(sa.inspect(conn).get_table_names())
        assert migrate.downgrade(url, "base") is None
        with engine.connect() as conn:
            assert not {"decisions", "feedback"} & set(sa.inspect(conn).get_table_names())
        assert migrate.upgrade(url) == migrate.head_revision()
        again = SqlStore(url)
        again.ping()
        again.close()
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="failed"):
        migrate.upgrade(url, "no-such-revision")


def test_sqlite_runs_in_wal_mode_in_the_directory_migrate_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'store.db'}"
    migrate.upgrade(url)
    store = SqlStore(url)
    try:
        store.ping()
        with store._engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        assert (mode, sync) == ("wal", 1)  # 1 is NORMAL
    finally:
        store.close()


def retention_records() -> tuple[list[DecisionRecord], list[ShadowRecord]]:
    decisions = [
        record(1, ticket_id="T-1", created_at=T0 - timedelta(days=90)),
        record(2, ticket_id="T-2", created_at=T0 - timedelta(days=90)),
        record(3, ticket_id="T-1"),
        record(4, "globex", ticket_id="T-1"),
        record(5, ticket_id=None),
    ]
    shadows = [
        ShadowRecord(
            tenant=d.tenant,
            request_id=d.request_id,
            model_name="deskpilot-triage",
            model_version="5",
            intent="lost_card",
            confidence=0.5,
            route=Route.HUMAN,
            created_at=d.created_at,
        )
        for d in decisions
    ]
    return decisions, shadows


@pytest.mark.parametrize("batch", [1, 1000])
def test_purge_and_erase_delete_the_same_rows_as_the_memory_store(store: SqlStore, batch: int) -> None:
    memory = InMemoryStore()
    decisions, shadows = retention_records()
    for target in (store, memory):
        target.write_decisions(decisions)
        target.write_shadow(shadows)
        for request_id in ("req-1", "req-3"):
            target.add_feedback("acme", request_id, "lost_card")
    cutoff = T0 - timedelta(days=30)
    purged = store.purge(cutoff, batch=batch)
    assert purged == memory.purge(cutoff)
    assert purged.to_dict() == {"decisions": 2, "feedback": 1, "shadow": 2, "suggestions": 0, "knowledge": 0}
    assert store.purge(cutoff).total == 0
    in_globex = store.erase_ticket(["T-1"], tenant="globex")
    assert in_globex.to_dict() == {
        "decisions": 1,
        "feedback": 0,
        "shadow": 1,
        "suggestions": 0,
        "knowledge": 0,
    }
    memory.erase_ticket(["T-1"], tenant="globex")
    erased = store.erase_ticket(["T-1", "T-9"])
    assert erased == memory.erase_ticket(["T-1", "T-9"])
    assert erased.to_dict() == {"decisions": 1, "feedback": 1, "shadow": 1, "suggestions": 0, "knowledge": 0}
    assert store.erase_ticket([]).total == 0
    for tenant in ("acme", "globex"):
        assert store.decisions(tenant) == memory.decisions(tenant)
        assert store.feedback(tenant) == memory.feedback(tenant)
    assert [d.request_id for d in store.decisions("acme")] == ["req-5"]
