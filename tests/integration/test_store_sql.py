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
from deskpilot.store.records import DecisionRecord
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
