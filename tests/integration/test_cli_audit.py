"""``deskpilot audit verify|log`` and the audit entries of ``deskpilot keys``, through the console script."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path

import pytest

from deskpilot.service.keys import create_key
from deskpilot.store import migrate
from tests.helpers import run_cli

KEY_LINE = re.compile(r"dp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


@pytest.fixture(autouse=True)
def default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's store is the SQLite file under its home unless it says otherwise."""
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)


def test_key_changes_are_audited_and_tampering_is_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = run_cli("keys", "create", "--tenant", "acme", "--label", "support desk", home=home)
    assert created.returncode == 0, created.stderr
    match = KEY_LINE.fullmatch(created.stdout.strip())
    assert match is not None, created.stdout
    raw_key, key_id, secret = match.group(0), match.group(1), match.group(2)
    assert "audited as entry 1" in created.stderr
    revoked = run_cli("keys", "revoke", key_id, "--reason", "leaked in a ticket", home=home)
    assert revoked.returncode == 0, revoked.stderr
    assert "audited as entry 2" in revoked.stderr

    listed = run_cli("audit", "log", home=home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "ACTOR", "ACTION", "TARGET", "REASON"]
    assert "key_create" in lines[1]
    assert f"acme/{key_id}" in lines[1]
    assert "created from the CLI" in lines[1]
    assert "key_revoke" in lines[2]
    assert "leaked in a ticket" in lines[2]

    as_json = run_cli("audit", "log", "--json", "--limit", "1", home=home)
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = json.loads(as_json.stdout)
    assert entry["seq"] == 2
    assert entry["action"] == "key_revoke"
    assert entry["payload"] == {"key_id": key_id, "tenant": "acme", "label": "support desk", "role": "agent"}
    assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"])
    assert re.fullmatch(r"[0-9a-f]{64}", entry["prev_hash"])
    stored_hash = json.loads((home / "keys.jsonl").read_text().splitlines()[0])["secret_sha256"]
    for output in (listed.stdout, as_json.stdout, created.stderr, revoked.stderr):
        assert raw_key not in output
        assert secret not in output
        assert stored_hash not in output

    intact = run_cli("audit", "verify", home=home)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith(
        f"chain intact: 2 entries (all keyed), head {entry['hash'][:12]}, 2 recorded heads matched\n"
    )

    with sqlite3.connect(home / "deskpilot.db") as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET reason = 'routine rotation' WHERE seq = 2")
    broken = run_cli("audit", "verify", "--json", home=home)
    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert (report["ok"], report["first_broken_seq"], report["checked"]) == (False, 2, 1)
    assert report["problem"] == "hash mismatch (row edited)"

    with sqlite3.connect(home / "deskpilot.db") as db:
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("DELETE FROM audit_log WHERE seq = 1")
    broken = run_cli("audit", "verify", home=home)
    assert broken.returncode == 1
    assert "chain broken at seq 1: sequence gap (row deleted)" in broken.stdout


def test_verify_without_a_store_is_an_error_not_an_intact_chain(tmp_path: Path) -> None:
    result = run_cli("audit", "verify", home=tmp_path)
    assert result.returncode == 1
    assert "no store database at" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "deskpilot.db").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_store_does_not_block_revocation_but_creation_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://deskpilot:secret@127.0.0.1:{_closed_port()}/deskpilot"
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", url)
    created = run_cli("keys", "create", "--tenant", "acme", home=tmp_path)
    assert created.returncode == 1
    assert created.stdout == ""  # no key is shown, and none exists
    assert "error: no key was created: its audit entry cannot be written now" in created.stderr
    assert "unavailable" in created.stderr
    assert "secret" not in created.stderr
    assert not (tmp_path / "keys.jsonl").exists()

    _, record = create_key(tmp_path / "keys.jsonl", "acme")
    revoked = run_cli("keys", "revoke", record.key_id, home=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {record.key_id}" in revoked.stdout
    assert "warning: the audit entry could not be written (store unavailable)" in revoked.stderr
    assert "secret" not in revoked.stderr
    listed = run_cli("keys", "list", "--json", home=tmp_path)
    assert [k["revoked"] for k in json.loads(listed.stdout)] == [True]


def test_a_postgres_schema_behind_refuses_create_and_fails_revoke_loudly(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(postgres_url, "0001")
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", postgres_url)
    created = run_cli("keys", "create", "--tenant", "acme", home=tmp_path)
    assert created.returncode == 1
    assert created.stdout == ""
    assert "deskpilot store migrate" in created.stderr
    assert not (tmp_path / "keys.jsonl").exists()

    _, record = create_key(tmp_path / "keys.jsonl", "acme")
    revoked = run_cli("keys", "revoke", record.key_id, home=tmp_path)
    assert revoked.returncode == 1  # the key is revoked all the same: revocation never waits on the audit
    assert f"revoked key {record.key_id}" in revoked.stdout
    assert "error: the audit entry could not be written" in revoked.stderr
    assert "deskpilot store migrate" in revoked.stderr
