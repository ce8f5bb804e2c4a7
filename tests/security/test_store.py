"""The store's findings: the service's own PostgreSQL role could rewrite the audit log (5), `/readyz` said
ready while nothing could be written or the SQLite file was gone (9), and the store's files were readable by
every local user (13); and the retention and erasure that wave 2 asks for (`deskpilot store purge|erase`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from deskpilot.config import Settings
from deskpilot.domain import Route
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import ModelManager
from deskpilot.service.triage import TriageService
from deskpilot.store import migrate
from deskpilot.store.audit import AuditAction, InMemoryAuditLog, new_entry
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord, ShadowRecord, utc_now
from deskpilot.store.sql import SqlStore
from deskpilot.store.tables import audit_log
from deskpilot.store.writer import BufferedWriter
from deskpilot.workflows.audit import AuditRecorder
from deskpilot.workflows.retention import RetentionTask
from tests.helpers import run_cli

OLD = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def plain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DESKPILOT_DATABASE_URL", "DESKPILOT_MIGRATION_DATABASE_URL", "DESKPILOT_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)


def decision(
    request_id: str,
    *,
    tenant: str = "acme",
    ticket_id: str | None = None,
    at: datetime | None = None,
    text: str = "where is my card",
) -> DecisionRecord:
    return DecisionRecord(
        tenant=tenant,
        request_id=request_id,
        ticket_id=ticket_id,
        model_name="deskpilot-triage",
        model_version="4",
        intent="card_arrival",
        confidence=0.9,
        route=Route.AUTO,
        latency_ms=3.0,
        text=text,
        created_at=at or utc_now(),
    )


def shadow(request_id: str, *, tenant: str = "acme", at: datetime | None = None) -> ShadowRecord:
    return ShadowRecord(
        tenant=tenant,
        request_id=request_id,
        model_name="deskpilot-triage",
        model_version="5",
        intent="card_arrival",
        confidence=0.8,
        route=Route.AUTO,
        created_at=at or utc_now(),
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- Finding 5, PostgreSQL: the runtime role cannot rewrite the audit log ------------------------------


@pytest.fixture
def runtime_url(postgres_url: str) -> str:
    """The fresh test database (owned by the migration role) as the runtime role `.ci/run` creates."""
    base = os.environ.get("DESKPILOT_TEST_RUNTIME_DATABASE_URL")
    if not base:
        if os.environ.get("DESKPILOT_REQUIRE_POSTGRES"):
            pytest.fail("DESKPILOT_REQUIRE_POSTGRES is set but DESKPILOT_TEST_RUNTIME_DATABASE_URL is not")
        pytest.skip("no runtime role: DESKPILOT_TEST_RUNTIME_DATABASE_URL is not set")
    database = sa.make_url(postgres_url).database
    return sa.make_url(base).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
def as_runtime(runtime_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(migrate.parse_url(runtime_url), poolclass=NullPool)
    yield engine
    engine.dispose()


TAMPERING = [
    "DELETE FROM audit_log",
    "UPDATE audit_log SET reason = 'routine'",
    "TRUNCATE audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "DROP TRIGGER audit_log_append_only ON audit_log",
    "ALTER TABLE audit_log DROP COLUMN mac",
    "DROP TABLE audit_log",
]


def test_the_runtime_role_can_append_but_never_rewrite_the_audit_log(
    tmp_path: Path,
    postgres_url: str,
    runtime_url: str,
    as_runtime: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESKPILOT_MIGRATION_DATABASE_URL", postgres_url)
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", runtime_url)
    migrated = run_cli("store", "migrate", home=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    role = sa.make_url(runtime_url).username
    assert f"runtime role {role}: INSERT and SELECT on audit_log" in migrated.stdout
    for _ in range(2):
        created = run_cli("keys", "create", "--tenant", "acme", home=tmp_path)
        assert created.returncode == 0, created.stderr

    for statement in TAMPERING:
        with as_runtime.begin() as conn, pytest.raises(sa.exc.ProgrammingError) as refused:
            conn.execute(sa.text(statement))
        assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value), statement

    # What the service does with the same credentials still works: log, correct, purge, erase.
    store = SqlStore(runtime_url)
    try:
        store.write_decisions([decision("r1", ticket_id="T-1", at=OLD), decision("r2", ticket_id="T-2")])
        store.write_shadow([shadow("r2")])
        store.add_feedback("acme", "r2", "lost_card")
        store.add_feedback("acme", "r2", "card_arrival")
        assert store.purge(OLD + timedelta(days=1)).decisions == 1
        assert store.erase_ticket(["T-2"]).to_dict() == {
            "decisions": 1,
            "feedback": 1,
            "shadow": 1,
            "suggestions": 0,
            "knowledge": 0,
        }
    finally:
        store.close()
    assert run_cli("audit", "verify", home=tmp_path).returncode == 0
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", postgres_url)  # an auditor's role sees the same heads
    as_owner = run_cli("audit", "verify", home=tmp_path)
    assert "2 recorded heads matched" in as_owner.stdout, as_owner.stdout + as_owner.stderr
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", runtime_url)

    # What the role may still do, INSERT, cannot forge an entry: it has no audit key.
    log = SqlAuditLog(runtime_url)
    try:
        head = log.head()
    finally:
        log.close()
    assert head is not None
    forged = new_entry(
        head.seq, head.hash, actor="alice", action="gate", target="m/1", reason="x", payload={}
    )
    with as_runtime.begin() as conn:
        row = {f: getattr(forged, f) for f in ("seq", "at", "actor", "action", "target", "reason", "hash")}
        conn.execute(sa.insert(audit_log).values(**row, payload={}, prev_hash=forged.prev_hash))
    verified = run_cli("audit", "verify", home=tmp_path)
    assert verified.returncode == 1
    assert "chain broken at seq 3: unkeyed entry after keyed ones" in verified.stdout


def test_migrating_as_the_runtime_role_itself_is_refused(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKPILOT_MIGRATION_DATABASE_URL", postgres_url)
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", postgres_url)
    refused = run_cli("store", "migrate", home=tmp_path)
    assert refused.returncode == 1
    assert "is the role migrating the store" in refused.stderr
    assert "deskpilot:deskpilot@" not in refused.stderr


# --- Finding 9: readiness --------------------------------------------------------------------------------


def service_over(store: SqlStore, writer: BufferedWriter | None = None) -> TriageService:
    models = ModelManager(InMemoryRegistry(), "deskpilot-triage")
    return TriageService(models, store=store, writer=writer, metrics=ServiceMetrics())


def store_problems(service: TriageService) -> list[str]:
    """What ready() says about the store (no model is loaded in these tests)."""
    _, problems = service.ready()
    return [p for p in problems if not p.startswith("no champion model")]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Path, SqlStore]]:
    path = tmp_path / "data" / "deskpilot.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    store = SqlStore(url, busy_timeout_s=0.1)
    yield path, store
    store.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_sqlite_file_is_not_ready_and_the_path_stays_private(
    tmp_path: Path, sqlite_store: tuple[Path, SqlStore], how: str
) -> None:
    path, store = sqlite_store
    service = service_over(store)
    store.write_decisions([decision("r1")])
    assert store_problems(service) == []
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    else:
        other = tmp_path / "other.db"
        migrate.upgrade(f"sqlite:///{other}")
        other.replace(path)
    problems = store_problems(service)
    assert any(f"database file was {how}" in p for p in problems), problems
    assert not any(str(tmp_path) in p or "sqlite:" in p for p in problems), problems


def test_a_store_that_reads_but_cannot_write_is_not_ready_until_writes_go_through(
    sqlite_store: tuple[Path, SqlStore],
) -> None:
    path, store = sqlite_store
    writer = BufferedWriter(store, max_buffer=3, flush_interval_s=0.01, retry_backoff_s=(0.05, 0.2))
    service = service_over(store, writer)
    try:
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock: reads still work (WAL)
        try:
            writer.submit(decision("r1"))
            wait_for(lambda: not writer.healthy, "the first failed write")
            problems = store_problems(service)
            assert any(p.startswith("decisions are not being written") for p in problems), problems
            for i in range(2, 5):
                writer.submit(decision(f"r{i}"))
            assert any("decision buffer is full" in p for p in store_problems(service))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_for(lambda: store_problems(service) == [], "ready once writes go through")
        assert writer.flush(timeout=10)
        assert len(store.decisions("acme")) == 3
    finally:
        writer.close(timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unreachable_store_s_readiness_problem_names_no_database(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'store.db'}"
        secret_parts = [str(tmp_path), "sqlite:"]
    else:
        url = f"postgresql+psycopg://deskpilot:pw@127.0.0.1:{_closed_port()}/private_db"
        secret_parts = ["private_db", "postgresql", "deskpilot:"]
    store = SqlStore(url, connect_timeout_s=2)
    try:
        (problem,) = store_problems(service_over(store))
    finally:
        store.close()
    assert problem.startswith("store unreachable: the store is unavailable while checking the connection")
    assert not any(part in problem for part in secret_parts), problem


# --- Finding 13: file modes -------------------------------------------------------------------------------


@pytest.fixture
def default_umask() -> Iterator[None]:
    """The common umask (022), under which Python creates folders 0755 and files 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_home_and_everything_the_store_writes_in_it_are_owner_only(
    tmp_path: Path, default_umask: None
) -> None:
    home = tmp_path / "home"
    assert run_cli("store", "migrate", home=home).returncode == 0
    assert mode(home) == 0o700
    assert mode(home / "deskpilot.db") == 0o600
    created = run_cli("keys", "create", "--tenant", "acme", home=home)
    assert created.returncode == 0, created.stderr
    expected = ["deskpilot.db", "keys.jsonl", "keys.jsonl.lock", "audit.key", "audit-heads.jsonl"]
    expected += [name for name in ("deskpilot.db-wal", "deskpilot.db-shm") if (home / name).exists()]
    for name in expected:
        assert mode(home / name) == 0o600, name
    loose = [p.name for p in home.rglob("*") if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []


def test_an_existing_world_readable_store_is_tightened(tmp_path: Path, default_umask: None) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    settings = Settings(home=home)
    migrate.upgrade(settings.resolved_database_url)
    store = SqlStore(settings.resolved_database_url)
    store.write_decisions([decision("r1")])
    store.close()
    for name in ("deskpilot.db", "deskpilot.db-wal"):
        if (home / name).exists():
            (home / name).chmod(0o644)
    done = run_cli("store", "migrate", home=home)
    assert done.returncode == 0
    assert f"warning: {home} is open to other users (mode 0755)" in done.stderr
    for name in ("deskpilot.db", "deskpilot.db-wal"):
        if (home / name).exists():
            assert mode(home / name) == 0o600, name


# --- Retention and erasure --------------------------------------------------------------------------------


def seeded(home: Path) -> Settings:
    """A store with old and new decisions of two tickets in two tenants, feedback and shadow answers."""
    settings = Settings(home=home)
    migrate.upgrade(settings.resolved_database_url)
    store = SqlStore(settings.resolved_database_url)
    try:
        store.write_decisions(
            [
                decision("old-1", ticket_id="T-4242", at=OLD, text="jane's card 4242 never arrived"),
                decision("old-2", ticket_id="T-7", at=OLD),
                decision("new-1", ticket_id="T-4242", text="jane asks again about card 4242"),
                decision("new-2", tenant="globex", ticket_id="T-4242", text="jane at globex"),
                decision("new-3", ticket_id="T-7"),
            ]
        )
        store.write_shadow([shadow("old-1", at=OLD), shadow("new-1"), shadow("new-3")])
        store.add_feedback("acme", "old-1", "lost_card")
        store.add_feedback("acme", "new-1", "lost_card")
    finally:
        store.close()
    return settings


def remaining(settings: Settings, table: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(migrate.parse_url(settings.resolved_database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(f"SELECT tenant, request_id FROM {table} ORDER BY tenant, request_id")
            )
            return [(row.tenant, row.request_id) for row in found]
    finally:
        engine.dispose()


def audit_entries(home: Path) -> list[dict[str, object]]:
    listed = run_cli("audit", "log", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    entries: list[dict[str, object]] = json.loads(listed.stdout)
    return entries


def test_purge_deletes_what_is_older_than_the_date_with_its_feedback_and_audits_it(tmp_path: Path) -> None:
    settings = seeded(tmp_path)
    purged = run_cli("store", "purge", "--before", "2025-01-01", "--reason", "policy", home=tmp_path)
    assert purged.returncode == 0, purged.stderr
    assert "2 decisions, 1 feedback, 1 shadow answers" in purged.stdout
    assert remaining(settings, "decisions") == [
        ("acme", "new-1"),
        ("acme", "new-3"),
        ("globex", "new-2"),
    ]
    assert remaining(settings, "feedback") == [("acme", "new-1")]
    assert remaining(settings, "shadow_decisions") == [("acme", "new-1"), ("acme", "new-3")]
    (entry,) = audit_entries(tmp_path)
    assert entry["action"] == AuditAction.STORE_PURGE
    assert entry["payload"] == {
        "before": "2025-01-01T00:00:00+00:00",
        "decisions": 2,
        "feedback": 1,
        "shadow": 1,
        "suggestions": 0,
        "knowledge": 0,
    }
    assert run_cli("audit", "verify", home=tmp_path).returncode == 0

    future = run_cli("store", "purge", "--before", "2999-01-01", home=tmp_path)
    assert future.returncode == 2
    assert "in the future" in future.stderr


def test_erase_removes_a_ticket_everywhere_and_the_audit_keeps_no_trace_of_its_id(tmp_path: Path) -> None:
    settings = seeded(tmp_path)
    erased = run_cli(
        "store", "erase", "--ticket-id", "T-4242", "--reason", "GDPR request from jane@example.com",
        home=tmp_path,
    )  # fmt: skip
    assert erased.returncode == 0, erased.stderr
    assert "3 decisions, 2 feedback, 2 shadow answers" in erased.stdout
    assert remaining(settings, "decisions") == [("acme", "new-3"), ("acme", "old-2")]
    assert remaining(settings, "feedback") == []
    assert remaining(settings, "shadow_decisions") == [("acme", "new-3")]

    (entry,) = audit_entries(tmp_path)
    assert entry["action"] == AuditAction.STORE_ERASE
    # the entry's hashes, MAC and keyed digest are random-looking hex that may contain "4242" by chance
    dumped = re.sub(r"\b[0-9a-f]{32,}\b", "<hex>", json.dumps(entry))
    for personal in ("T-4242", "jane", "4242"):
        assert personal not in dumped
    payload = entry["payload"]
    assert isinstance(payload, dict)
    assert {k: payload[k] for k in ("decisions", "feedback", "shadow", "tenant")} == {
        "decisions": 3,
        "feedback": 2,
        "shadow": 2,
        "tenant": None,
    }
    assert len(str(payload["ticket_id_hmac"])) == 64
    assert entry["reason"] == "GDPR request from <EMAIL>"
    # Deleted rows are overwritten, not left in the file's free pages or its write-ahead log.
    files = [tmp_path / name for name in ("deskpilot.db", "deskpilot.db-wal") if (tmp_path / name).exists()]
    for path in files:
        assert b"T-4242" not in path.read_bytes(), path
        assert b"jane" not in path.read_bytes(), path
    assert run_cli("audit", "verify", home=tmp_path).returncode == 0


def test_erase_can_be_limited_to_a_tenant_and_matches_the_form_the_service_stores(tmp_path: Path) -> None:
    settings = seeded(tmp_path)
    only = run_cli("store", "erase", "--ticket-id", "T-4242", "--tenant", "globex", "--json", home=tmp_path)
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["deleted"] == {
        "decisions": 1,
        "feedback": 0,
        "shadow": 0,
        "suggestions": 0,
        "knowledge": 0,
    }
    assert ("acme", "new-1") in remaining(settings, "decisions")

    # An e-mail address as ticket id: the service stores it redacted, shared with every such ticket, so
    # only a row that kept it as given (logged before ids were redacted) is erased, and the rest reported.
    store = SqlStore(settings.resolved_database_url)
    try:
        store.write_decisions(
            [decision("legacy", ticket_id="jane@example.com"), decision("redacted", ticket_id="<EMAIL>")]
        )
    finally:
        store.close()
    mail = run_cli("store", "erase", "--ticket-id", "jane@example.com", home=tmp_path)
    assert mail.returncode == 0, mail.stderr
    assert "1 decisions" in mail.stdout
    assert "store this one as '<EMAIL>', which other tickets share" in mail.stderr
    kept = remaining(settings, "decisions")
    assert ("acme", "redacted") in kept
    assert ("acme", "legacy") not in kept


def test_the_retention_task_purges_and_audits_only_what_it_deleted() -> None:
    store = InMemoryStore()
    store.write_decisions([decision("old", at=utc_now() - timedelta(days=40)), decision("new")])
    store.write_shadow([shadow("old", at=utc_now() - timedelta(days=40))])
    log = InMemoryAuditLog()
    task = RetentionTask(store, AuditRecorder(log, actor="svc"), days=30, interval_s=3600, first_delay_s=0)
    deleted = task.run_once()
    assert deleted is not None
    assert deleted.to_dict() == {"decisions": 1, "feedback": 0, "shadow": 1, "suggestions": 0, "knowledge": 0}
    assert task.run_once() == deleted.__class__()
    (entry,) = log.entries()
    assert (entry.action, entry.actor, entry.payload["retention_days"]) == ("store_purge", "svc", 30)
    assert [r.request_id for r in store.decisions("acme")] == ["new"]

    store.available = False
    assert task.run_once() is None  # an outage is logged and tried again at the next interval


def test_the_retention_task_runs_in_the_background_until_stopped() -> None:
    import asyncio

    store = InMemoryStore()
    store.write_decisions([decision("old", at=utc_now() - timedelta(days=40))])
    task = RetentionTask(
        store, AuditRecorder(InMemoryAuditLog(), actor="svc"), days=1, interval_s=3600, first_delay_s=0
    )

    async def scenario() -> int:
        await task.start()
        for _ in range(400):
            if task.runs:
                break
            await asyncio.sleep(0.05)
        await task.stop()
        return task.runs

    assert asyncio.run(scenario()) == 1
    assert store.decisions("acme") == []
