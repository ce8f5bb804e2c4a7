"""Finding 5: the audit chain could be wiped, truncated, re-chained or extended with a forged entry, and
`deskpilot audit verify` still said intact (a forged append passed `--anchor` too).

Each test attacks the store's SQLite file the way someone with the database's credentials (and DDL rights)
would, never the home folder that holds the audit key and the head ledger, then runs `audit verify` as an
operator does. The PostgreSQL half (the service's role cannot delete, update, truncate or alter the table)
is in test_store.py.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskpilot.config import Settings
from deskpilot.errors import StoreError
from deskpilot.store import migrate
from deskpilot.store.audit import (
    GENESIS_HASH,
    PROBLEM_ANCHOR,
    PROBLEM_KEY,
    PROBLEM_MAC,
    PROBLEM_TRUNCATED,
    PROBLEM_UNKEYED,
    AuditEntry,
    InMemoryAuditLog,
    new_entry,
)
from deskpilot.store.audit_seal import ChainSeal, HeadLedger, load_keys
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.workflows import keys
from deskpilot.workflows.audit import verify_chain
from tests.helpers import run_cli


@pytest.fixture(autouse=True)
def default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DESKPILOT_DATABASE_URL", "DESKPILOT_AUDIT_KEY", "DESKPILOT_AUDIT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DESKPILOT_AUDIT_LEDGER", raising=False)


def audited_home(home: Path, n: int = 3) -> Settings:
    """A home whose store holds ``n`` key_create entries, written the way the CLI writes them."""
    settings = Settings(home=home)
    for i in range(n):
        keys.create(settings, f"tenant{i}", reason=f"customer {i}")
    return settings


def db(settings: Settings) -> Path:
    return settings.home / "deskpilot.db"


def tamper(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Rewrite the table as an attacker with the database's DDL rights would: the triggers go first."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)
    conn.close()


def rows(path: Path) -> list[AuditEntry]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            "SELECT seq, at, actor, action, target, reason, payload, prev_hash, hash, key_id, mac "
            "FROM audit_log ORDER BY seq"
        ).fetchall()
    conn.close()
    return [
        AuditEntry(
            seq=seq,
            at=datetime.fromisoformat(at).replace(tzinfo=UTC),
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            payload=json.loads(payload),
            prev_hash=prev_hash,
            hash=digest,
            key_id=key_id,
            mac=mac,
        )
        for seq, at, actor, action, target, reason, payload, prev_hash, digest, key_id, mac in found
    ]


def insert(entry: AuditEntry) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO audit_log (seq, at, actor, action, target, reason, payload, prev_hash, hash, "
        "key_id, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.seq,
            entry.at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
            entry.actor,
            entry.action,
            entry.target,
            entry.reason,
            json.dumps(entry.payload),
            entry.prev_hash,
            entry.hash,
            entry.key_id,
            entry.mac,
        ),
    )


def forged_after(last: AuditEntry, **fields: Any) -> AuditEntry:
    """A correctly chained entry after ``last``: the hashes are public, anyone can compute them."""
    entry = new_entry(
        last.seq,
        last.hash,
        actor="alice",
        action="key_create",
        target="evil/deadbeef",
        reason="looks routine",
        payload={"key_id": "deadbeef", "tenant": "evil", "label": None},
    )
    return AuditEntry(**{**{f: getattr(entry, f) for f in AuditEntry.__dataclass_fields__}, **fields})


def verify(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("audit", "verify", "--json", *args, home=settings.home)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def test_an_intact_keyed_chain_verifies_against_its_recorded_heads(tmp_path: Path) -> None:
    settings = audited_home(tmp_path)
    code, report = verify(settings)
    assert code == 0, report
    assert (report["ok"], report["checked"], report["keyed"], report["unkeyed"]) == (True, 3, 3, 0)
    assert report["macs_checked"] is True
    assert report["anchors_checked"] == 3
    assert all(entry.keyed for entry in rows(db(settings)))


def test_a_wiped_log_is_not_an_intact_one(tmp_path: Path) -> None:
    settings = audited_home(tmp_path)
    tamper(db(settings), ("DELETE FROM audit_log", ()))
    code, report = verify(settings)
    assert code == 1
    assert (report["problem"], report["first_broken_seq"]) == (PROBLEM_TRUNCATED, 1)
    assert "names entry 3" in report["detail"]


def test_a_deleted_tail_is_found_without_an_anchor(tmp_path: Path) -> None:
    settings = audited_home(tmp_path)
    tamper(db(settings), ("DELETE FROM audit_log WHERE seq >= 2", ()))
    code, report = verify(settings)
    assert code == 1
    assert (report["problem"], report["first_broken_seq"], report["checked"]) == (PROBLEM_TRUNCATED, 2, 1)


def test_a_chain_rechained_from_an_entry_is_found(tmp_path: Path) -> None:
    settings = audited_home(tmp_path)
    first, second, _third = rows(db(settings))
    # Rewrite entry 2 (a different reason) and everything after it with correct hashes and no MAC.
    rewritten = new_entry(
        first.seq,
        first.hash,
        actor=second.actor,
        action=second.action,
        target=second.target,
        reason="routine rotation",
        payload=second.payload,
        at=second.at,
    )
    tamper(db(settings), ("DELETE FROM audit_log WHERE seq >= 2", ()), insert(rewritten))
    code, report = verify(settings)
    assert code == 1
    assert (report["problem"], report["first_broken_seq"]) == (PROBLEM_UNKEYED, 2)

    # The same, borrowing a real entry's key id and MAC: the MAC binds the hash, so it does not fit.
    borrowed = forged_after(first, key_id=second.key_id, mac=second.mac)
    tamper(db(settings), ("DELETE FROM audit_log WHERE seq >= 2", ()), insert(borrowed))
    code, report = verify(settings)
    assert (code, report["problem"], report["first_broken_seq"]) == (1, PROBLEM_MAC, 2)


def test_a_chain_rewritten_wholesale_as_unkeyed_entries_is_found(tmp_path: Path) -> None:
    settings = audited_home(tmp_path, n=2)
    previous_seq, previous_hash = 0, GENESIS_HASH
    forged = []
    for entry in rows(db(settings)):  # the same content, re-hashed from the genesis, MACs stripped
        again = new_entry(
            previous_seq,
            previous_hash,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            reason=entry.reason + ".",
            payload=entry.payload,
            at=entry.at,
        )
        forged.append(insert(again))
        previous_seq, previous_hash = again.seq, again.hash
    tamper(db(settings), ("DELETE FROM audit_log", ()), *forged)
    code, report = verify(settings)
    assert code == 1
    assert (report["problem"], report["first_broken_seq"]) == (PROBLEM_ANCHOR, 1)


@pytest.mark.parametrize(
    ("forgery", "problem"),
    [
        ({"key_id": None, "mac": None}, PROBLEM_UNKEYED),
        ({"mac": "0" * 64}, PROBLEM_MAC),
        ({"key_id": "000000000000", "mac": "0" * 64}, PROBLEM_KEY),
    ],
    ids=["unkeyed", "bad-mac", "unknown-key"],
)
def test_a_forged_correctly_chained_append_fails_even_with_the_anchor(
    tmp_path: Path, forgery: dict[str, Any], problem: str
) -> None:
    settings = audited_home(tmp_path)
    code, before = verify(settings)
    assert code == 0
    anchor = f"{before['head']['seq']}:{before['head']['hash']}"
    last = rows(db(settings))[-1]
    forged = forged_after(last, **{"key_id": last.key_id, "mac": last.mac, **forgery})
    tamper(db(settings), insert(forged))  # INSERT needs no DDL: the service's own role may do it
    code, report = verify(settings, "--anchor", anchor)
    assert code == 1
    assert (report["problem"], report["first_broken_seq"]) == (problem, 4)


def test_entries_written_before_audit_keys_still_verify_and_are_reported_unkeyed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    url = settings.resolved_database_url
    migrate.upgrade(url, "0004")  # a store of the release before keys, with its entries
    with sqlite3.connect(tmp_path / "deskpilot.db") as conn:
        previous_seq, previous_hash = 0, GENESIS_HASH
        for i in range(2):
            old = new_entry(
                previous_seq,
                previous_hash,
                actor="bob",
                action="promote",
                target=f"models:/deskpilot-triage/{i + 1}",
                reason="gate passed",
                payload={"to": "champion"},
            )
            sql, params = insert(old)
            legacy = sql.replace(", key_id, mac", "").replace(", ?, ?)", ")")
            conn.execute(legacy, params[:-2])
            previous_seq, previous_hash = old.seq, old.hash
    conn.close()
    assert run_cli("store", "migrate", home=tmp_path).returncode == 0
    keys.create(settings, "acme")  # the first keyed entry

    done = run_cli("audit", "verify", home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 entries (1 keyed, 2 unkeyed: entries 1..2, written before audit keys)" in done.stdout
    code, report = verify(settings)
    assert (code, report["keyed"], report["unkeyed"]) == (0, 1, 2)

    # Unkeyed entries may only be the chain's start: one after the keyed entry is a forgery.
    last = rows(db(settings))[-1]
    tamper(db(settings), insert(forged_after(last, key_id=None, mac=None)))
    code, report = verify(settings)
    assert (code, report["problem"], report["first_broken_seq"]) == (1, PROBLEM_UNKEYED, 4)


def test_the_key_and_the_ledger_live_outside_the_database_owner_only(tmp_path: Path) -> None:
    settings = audited_home(tmp_path, n=1)
    for path in (settings.resolved_audit_key_file, settings.resolved_audit_ledger):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secret = settings.resolved_audit_key_file.read_text().strip()
    with sqlite3.connect(db(settings)) as conn:
        dumped = "\n".join(conn.iterdump())
    conn.close()
    assert secret not in dumped
    assert secret not in db(settings).read_bytes().decode("latin-1")


def test_a_verifier_without_the_key_fails_closed(tmp_path: Path) -> None:
    settings = audited_home(tmp_path, n=1)
    settings.resolved_audit_key_file.unlink()
    code, report = verify(settings)
    assert (code, report["problem"], report["first_broken_seq"]) == (1, PROBLEM_KEY, 1)


def test_a_rotated_key_signs_new_entries_and_the_old_one_still_verifies(tmp_path: Path) -> None:
    settings = audited_home(tmp_path, n=1)
    rotated = run_cli("audit", "rotate-key", "--reason", "yearly", home=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    keys.create(settings, "later")
    entries = rows(db(settings))
    assert [e.action for e in entries] == ["key_create", "audit_key_rotate", "key_create"]
    old, new = entries[0].key_id, entries[1].key_id
    assert old != new
    assert entries[1].payload == {"previous_key_id": old, "key_id": new}
    assert entries[2].key_id == new
    code, report = verify(settings)
    assert (code, report["checked"], report["keyed"]) == (0, 3, 3)


def test_a_configured_key_signs_instead_of_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKPILOT_AUDIT_KEY", "k" * 40)
    settings = audited_home(tmp_path, n=1)
    assert not settings.resolved_audit_key_file.exists()
    assert verify(settings)[0] == 0
    monkeypatch.setenv("DESKPILOT_AUDIT_KEY", "another key of at least thirty-two characters")
    code, report = verify(Settings(home=tmp_path))
    assert (code, report["problem"]) == (1, PROBLEM_KEY)


def test_the_service_s_log_is_sealed_and_refuses_unkeyed_appends_after_keyed_ones(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    ledger = HeadLedger(settings.resolved_audit_ledger)
    seal = ChainSeal(lambda: load_keys([], settings.resolved_audit_key_file, create=True), ledger)
    log = InMemoryAuditLog(seal=seal)
    log.append("svc", "auto_rollback", "models:/m/2", "breach")
    assert log.verify().ok
    assert ledger.count("memory") == 1
    log.use_seal(None)
    with pytest.raises(StoreError, match="no audit key"):
        log.append("svc", "auto_rollback", "models:/m/2", "breach")


def test_verify_from_python_checks_the_ledger_too(tmp_path: Path) -> None:
    settings = audited_home(tmp_path, n=2)
    log = SqlAuditLog(settings.resolved_database_url)  # no seal: what the hashes alone can tell
    try:
        assert log.verify().ok
    finally:
        log.close()
    tamper(db(settings), ("DELETE FROM audit_log WHERE seq = 2", ()))
    assert verify_chain(settings).result.problem == PROBLEM_TRUNCATED
