"""The audit chain on a real database, SQLite (a temporary file) and PostgreSQL (a fresh database per test):
tampering done directly in SQL is found at the right entry, and concurrent writers never fork the chain."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from deskpilot.errors import StoreError, StoreUnavailableError
from deskpilot.store import migrate
from deskpilot.store.audit import (
    GENESIS_HASH,
    PROBLEM_ANCHOR,
    PROBLEM_CHAIN,
    PROBLEM_EDITED,
    PROBLEM_GAP,
    PROBLEM_KEY,
    PROBLEM_TRUNCATED,
    AuditAnchor,
    new_entry,
)
from deskpilot.store.audit_seal import ChainSeal, HeadLedger, load_keys
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.store.sql import SqlStore
from deskpilot.store.tables import audit_log
from tests.helpers import REPO_ROOT


@pytest.fixture
def log(url: str) -> Iterator[SqlAuditLog]:
    migrate.upgrade(url)
    sql_log = SqlAuditLog(url)
    yield sql_log
    sql_log.close()


def fill(log: SqlAuditLog, n: int = 5) -> None:
    for i in range(1, n + 1):
        log.append(f"user{i}", "promote", f"models:/deskpilot-triage/{i}", f"reason {i}", {"version": i})


@pytest.fixture
def raw(url: str) -> Iterator[sa.Engine]:
    """An engine for tampering as an attacker with DDL rights would: the append-only triggers go first."""
    engine = sa.create_engine(migrate.parse_url(url))
    yield engine
    engine.dispose()


def tamper(engine: sa.Engine, *statements: sa.Executable) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(statement)


def test_entries_round_trip(log: SqlAuditLog) -> None:
    assert log.head() is None
    assert log.verify().ok
    payload = {
        "to": "champion",
        "percent": 12.5,
        "nested": {"ids": (1, 2), "ok": True, "none": None},
        "ü": "ñ",
    }
    first = log.append("alice", "promote", "models:/deskpilot-triage/4", "gate passed: ünïcode", payload)
    second = log.append("bob", "rollback", "models:/deskpilot-triage/3", "", None)
    assert first.payload == {**payload, "nested": {"ids": [1, 2], "ok": True, "none": None}}
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (1, GENESIS_HASH, 2, first.hash)
    assert second.payload == {}
    assert log.entries() == [first, second]
    assert log.head() == second
    assert log.entries(since_seq=1) == [second]
    assert log.entries(limit=1) == [first]
    assert log.entries(since_seq=2) == []
    result = log.verify()
    assert (result.ok, result.checked, result.head) == (True, 2, second)
    assert first.at.utcoffset() == timedelta(0)


def test_entries_page_through_long_logs(log: SqlAuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("deskpilot.store.audit_sql._PAGE", 3)
    fill(log, 8)
    assert [e.seq for e in log.entries()] == list(range(1, 9))
    assert [e.seq for e in log.entries(since_seq=2, limit=4)] == [3, 4, 5, 6]
    assert log.verify().checked == 8


def test_the_database_refuses_updates_and_deletes(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log, 2)
    statements = ["UPDATE audit_log SET reason = 'x' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 2"]
    if raw.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), raw.begin() as conn:
            conn.exec_driver_sql(statement)
    assert log.verify().checked == 2


def test_an_edited_reason_is_found_at_its_entry(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log)
    tamper(raw, sa.text("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2"))
    result = log.verify()
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (
        False,
        2,
        PROBLEM_EDITED,
        1,
    )


@pytest.mark.parametrize("column", ["payload", "at", "actor"])
def test_other_edited_columns_are_found(log: SqlAuditLog, raw: sa.Engine, column: str) -> None:
    fill(log)
    third = log.entries()[2]
    changes = {"payload": {"version": 99}, "at": third.at + timedelta(microseconds=1), "actor": "mallory"}
    tamper(raw, sa.update(audit_log).where(audit_log.c.seq == 3).values({column: changes[column]}))
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (3, PROBLEM_EDITED)


def test_a_deleted_row_is_a_sequence_gap(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log)
    tamper(raw, sa.text("DELETE FROM audit_log WHERE seq = 2"))
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_GAP)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log)
    forged = dataclasses.replace(log.entries()[1], reason="nothing to see")
    tamper(
        raw,
        sa.text("UPDATE audit_log SET reason = :reason, hash = :hash WHERE seq = 2").bindparams(
            reason=forged.reason, hash=forged.computed_hash()
        ),
    )
    result = log.verify()
    assert (result.first_broken_seq, result.problem, result.checked) == (3, PROBLEM_CHAIN, 2)


def test_a_deleted_row_with_the_rest_renumbered_breaks_the_chain(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log, 4)
    entries = log.entries()
    statements: list[sa.Executable] = [sa.text("DELETE FROM audit_log WHERE seq = 2")]
    for entry in entries[2:]:
        moved = dataclasses.replace(entry, seq=entry.seq - 1)
        statements.append(
            sa.update(audit_log)
            .where(audit_log.c.seq == entry.seq)
            .values(seq=moved.seq, hash=moved.computed_hash())
        )
    tamper(raw, *statements)
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_CHAIN)


def test_a_deleted_last_row_is_found_with_an_anchor(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log, 3)
    head = log.head()
    assert head is not None
    anchor = AuditAnchor(head.seq, head.hash[:12])
    assert log.verify(anchor).ok
    tamper(raw, sa.text("DELETE FROM audit_log WHERE seq = 3"))
    assert log.verify().ok  # undetectable without an anchor, as documented
    result = log.verify(anchor)
    assert (result.first_broken_seq, result.problem) == (3, PROBLEM_TRUNCATED)
    log.append("mallory", "promote", "models:/deskpilot-triage/3", "reason 3", {"version": 3})
    result = log.verify(anchor)
    assert (result.first_broken_seq, result.problem) == (3, PROBLEM_ANCHOR)


def test_unreadable_sqlite_rows_are_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    log = SqlAuditLog(url)
    engine = sa.create_engine(url)
    try:
        fill(log, 4)
        tamper(engine, sa.text("UPDATE audit_log SET payload = '{not json' WHERE seq = 2"))
        result = log.verify()
        assert (result.first_broken_seq, result.problem) == (2, PROBLEM_EDITED)
        assert "unreadable" in result.detail
        with pytest.raises(StoreError, match="entry 2 is unreadable"):
            log.entries()
        tamper(engine, sa.text("UPDATE audit_log SET payload = '{}', at = 'yesterday' WHERE seq = 2"))
        assert log.verify().first_broken_seq == 2
        tamper(engine, sa.text("UPDATE audit_log SET seq = 'two' WHERE seq = 2"))
        assert (log.verify().first_broken_seq, log.verify().problem) == (2, PROBLEM_GAP)
    finally:
        log.close()
        engine.dispose()


def test_unique_seq_and_prev_hash_stop_a_fork(log: SqlAuditLog, raw: sa.Engine) -> None:
    fill(log, 2)
    first = log.entries()[0]
    fork = {**dataclasses.asdict(first), "hash": "f" * 64}
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.insert(audit_log).values({**fork, "seq": 3}))  # same prev_hash as entry 1
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.insert(audit_log).values({**fork, "seq": 2, "prev_hash": "e" * 64}))


def test_a_lost_race_is_retried_then_fails_loudly(log: SqlAuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    original = SqlAuditLog._append_once
    calls = {"n": 0}
    conflict = sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: audit_log.seq"))

    def lose_once(self: SqlAuditLog, *args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise conflict
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlAuditLog, "_append_once", lose_once)
    assert log.append("a", "gate", "t", "r").seq == 1
    assert calls["n"] == 2

    def always_lose(self: SqlAuditLog, *args: object) -> object:
        raise conflict

    monkeypatch.setattr(SqlAuditLog, "_append_once", always_lose)
    with pytest.raises(StoreError, match="UNIQUE constraint failed"):
        log.append("a", "gate", "t", "r")
    assert log.verify().checked == 1


def test_concurrent_appends_from_threads_never_fork(log: SqlAuditLog, url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def append(worker: int) -> None:
        own = SqlAuditLog(url) if worker % 2 else log  # separate engines and a shared one
        try:
            start.wait()
            for n in range(15):
                own.append(f"worker{worker}", "gate", f"t/{worker}", str(n), {"n": n})
        except BaseException as error:  # collected for the main thread
            errors.append(error)
        finally:
            if own is not log:
                own.close()

    threads = [threading.Thread(target=append, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, 91))
    result = log.verify()
    assert (result.ok, result.checked) == (True, 90)


APPENDER = """
import sys, time
from deskpilot.store.audit_sql import SqlAuditLog
url, worker, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
log = SqlAuditLog(url)
time.sleep(max(0.0, start - time.time()))
for n in range(count):
    log.append("proc" + worker, "gate", "t", str(n))
log.close()
"""


def test_concurrent_appends_from_processes_never_fork(log: SqlAuditLog, url: str) -> None:
    start = time.time() + 3  # every process imported and waiting before the first append
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(w), "40", str(start)],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, 121))
    assert {e.actor for e in entries} == {"proc0", "proc1", "proc2"}
    assert log.verify().ok


def test_migrations_add_and_remove_the_audit_log(url: str) -> None:
    assert migrate.upgrade(url, "0001") == "0001"
    behind = SqlAuditLog(url)
    store = SqlStore(url)
    try:
        for call in (behind.head, lambda: behind.append("a", "gate", "t", "r"), behind.verify, store.ping):
            head = migrate.head_revision()
            with pytest.raises(
                StoreError, match=rf"revision 0001, behind {head}: run `deskpilot store migrate`"
            ):
                call()
        assert migrate.upgrade(url) == migrate.head_revision()
        behind.append("a", "gate", "t", "r")
        assert behind.verify().ok
        store.ping()
        assert migrate.downgrade(url, "0001") == "0001"
        engine = sa.create_engine(migrate.parse_url(url))
        try:
            with engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                assert "audit_log" not in tables
                assert {"decisions", "feedback"} <= tables
                if engine.dialect.name == "postgresql":
                    functions = conn.execute(
                        sa.text("SELECT proname FROM pg_proc WHERE proname LIKE 'deskpilot%'")
                    )
                    assert functions.all() == []
        finally:
            engine.dispose()
        assert migrate.upgrade(url) == migrate.head_revision()
        fresh = SqlAuditLog(url)
        assert fresh.head() is None  # the downgrade dropped the old entries with the table
        fresh.close()
    finally:
        behind.close()
        store.close()


def test_an_unreachable_database_raises_store_unavailable(tmp_path: Path) -> None:
    gone = tmp_path / "gone" / "store.db"
    log = SqlAuditLog(f"sqlite:///{gone}")
    try:
        for call in (log.head, log.verify, log.entries, lambda: log.append("a", "gate", "t", "r")):
            with pytest.raises(StoreUnavailableError):
                call()
    finally:
        log.close()


def test_keyed_entries_round_trip_and_verify_on_both_databases(url: str, tmp_path: Path) -> None:
    migrate.upgrade(url)
    key_file = tmp_path / "audit.key"
    seal = ChainSeal(lambda: load_keys([], key_file, create=True), HeadLedger(tmp_path / "heads.jsonl"))
    log = SqlAuditLog(url, seal=seal)
    try:
        appended = [log.append("alice", "promote", f"models:/m/{i}", "r", {"i": i}) for i in range(3)]
        assert log.entries() == appended
        assert all(entry.keyed for entry in appended)
        assert [a.seq for a in seal.anchors(log.location)] == [1, 2, 3]
        result = log.verify()
        assert (result.ok, result.checked, result.unkeyed, result.anchors) == (True, 3, 0, 3)
    finally:
        log.close()
    stranger = ChainSeal(lambda: load_keys(["x" * 32], tmp_path / "none", create=False), None)
    other = SqlAuditLog(url, seal=stranger)
    try:
        result = other.verify()
        assert (result.ok, result.first_broken_seq, result.problem) == (False, 1, PROBLEM_KEY)
    finally:
        other.close()


def test_a_store_at_0004_keeps_its_unkeyed_entries_through_0005_and_back(url: str) -> None:
    assert migrate.upgrade(url, "0004") == "0004"
    engine = sa.create_engine(migrate.parse_url(url))
    try:
        entry = new_entry(0, GENESIS_HASH, actor="bob", action="gate", target="t", reason="r", payload={})
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (seq, at, actor, action, target, reason, payload, prev_hash, hash)"
                    " VALUES (1, :at, 'bob', 'gate', 't', 'r', '{}', :prev, :hash)"
                ),
                {"at": entry.at.replace(tzinfo=None), "prev": GENESIS_HASH, "hash": entry.hash},
            )
        assert migrate.upgrade(url) == migrate.head_revision() == "0008"
        log = SqlAuditLog(url)
        try:
            (kept,) = log.entries()
            assert (kept.hash, kept.key_id, kept.mac) == (entry.hash, None, None)
            result = log.verify()
            assert (result.ok, result.unkeyed) == (True, 1)
        finally:
            log.close()
        assert migrate.downgrade(url, "0004") == "0004"
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
            assert not {"key_id", "mac"} & columns
            assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar() == 1
    finally:
        engine.dispose()
