"""The application layer called from Python does what the CLI does, audit entries included; the audit policy
holds for every use case (fail before the change, queue only the deferrable actions)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from deskpilot.config import Settings
from deskpilot.errors import AuditWriteError, StoreError, StoreUnavailableError
from deskpilot.service.keys import create_key
from deskpilot.store.audit import AuditAction, InMemoryAuditLog
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.workflows import evaluation, keys, rollout, training
from deskpilot.workflows.audit import PENDING_FILE, AuditRecorder, PendingEntries, verify_chain
from tests.helpers import bundled_subset, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.csv"
    bundled_subset(labels=6, per_label=30).to_csv(path, index=False)
    return path


def entries(home: Path) -> list[dict[str, Any]]:
    result = run_cli("audit", "log", "--json", home=home)
    assert result.returncode == 0, result.stderr
    return [
        {k: e[k] for k in ("seq", "actor", "action", "target", "reason", "payload")}
        for e in json.loads(result.stdout)
    ]


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without what differs between two homes by nature: generated key ids, state timestamps."""
    payload = {k: v for k, v in entry["payload"].items() if k not in ("before", "after", "key_id")}
    for side in ("before", "after"):
        if side in entry["payload"]:
            state = entry["payload"][side]
            payload[side] = {k: state[k] for k in ("champion", "challenger", "stage", "percent", "revision")}
    tenant = payload.get("tenant")
    target = f"{tenant}/<key id>" if entry["action"].startswith("key_") else entry["target"]
    return {**entry, "target": target, "payload": payload}


def test_the_use_cases_from_python_write_the_cli_s_audit_entries(small_data: Path, tmp_path: Path) -> None:
    cli_home, py_home = tmp_path / "cli", tmp_path / "python"
    uri = "models:/deskpilot-triage/2"
    for seed in ("1", "2"):  # another seed passes its gate: both hold out the same frozen split (ADR 0019)
        trained = run_cli("train", "--data", small_data, "--model", "tfidf", "--seed", seed, home=cli_home)
        assert trained.returncode == 0, trained.stderr
    commands = [
        ("gate", uri, "--data", small_data),
        ("promote", uri, "--to", "canary", "--reason", "try it"),
        ("rollback", "--reason", "enough"),
        ("keys", "create", "--tenant", "acme", "--reason", "new customer"),
    ]
    for command in commands:
        done = run_cli(*command, home=cli_home)
        assert done.returncode == 0, (command, done.stderr)

    settings = Settings(home=py_home)
    for seed in (1, 2):
        training.train(settings, training.TrainRequest(data=small_data, family="tfidf", seed=seed))
    evaluation.gate_model(settings, uri, evaluation.LabelledData(small_data))
    rollout.promote(settings, uri, to="canary", reason="try it")
    rollout.rollback(settings, reason="enough")
    keys.create(settings, "acme", reason="new customer")

    from_cli, from_python = entries(cli_home), entries(py_home)
    actions = ["gate", "promote", "gate", "gate", "promote", "rollback", "key_create"]
    assert [e["action"] for e in from_cli] == actions
    assert [_comparable(e) for e in from_python] == [_comparable(e) for e in from_cli]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_store_stops_training_before_it_starts(small_data: Path, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://deskpilot:x@127.0.0.1:{_closed_port()}/deskpilot"
    settings = Settings(home=tmp_path, database_url=url)
    with pytest.raises(StoreUnavailableError):
        training.train(settings, training.TrainRequest(data=small_data, family="tfidf"))
    assert not settings.snapshot_dir.exists() or not any(settings.snapshot_dir.iterdir())


def test_revocations_queue_their_entries_and_the_next_append_writes_them_in_order(tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://deskpilot:x@127.0.0.1:{_closed_port()}/deskpilot"
    offline = Settings(home=tmp_path, database_url=dead)
    _, first = create_key(offline.keys_file, "acme", label="ops")
    _, second = create_key(offline.keys_file, "acme")
    with pytest.raises(StoreUnavailableError, match="no key was created"):
        keys.create(offline, "globex")
    assert [k.key_id for k in keys.listing(offline)] == [first.key_id, second.key_id]
    revoked = [keys.revoke(offline, record.key_id) for record in (first, second)]
    assert all(r.audit is not None and r.audit.queued for r in revoked)
    assert PendingEntries(tmp_path / PENDING_FILE).count() == 2

    online = Settings(home=tmp_path)  # the store is back (here: the local SQLite one)
    keys.create(online, "globex")
    assert PendingEntries(tmp_path / PENDING_FILE).count() == 0
    log = SqlAuditLog(online.resolved_database_url)
    try:
        written = log.entries()
    finally:
        log.close()
    assert verify_chain(online).result.ok
    assert [(e.action, e.payload["tenant"], e.payload.get("deferred")) for e in written] == [
        ("key_revoke", "acme", True),
        ("key_revoke", "acme", True),
        ("key_create", "globex", None),
    ]
    assert written[0].payload["queued_at"] < written[1].payload["queued_at"]
    assert all(e.keyed for e in written)


class RefusingLog(InMemoryAuditLog):
    """A store that answers but refuses appends (as one whose schema is behind does)."""

    def __init__(self, error: StoreError) -> None:
        super().__init__()
        self.error = error

    def head(self) -> Any:
        raise self.error

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def test_only_deferrable_actions_are_queued_and_only_while_the_store_is_unreachable(tmp_path: Path) -> None:
    pending = PendingEntries(tmp_path / PENDING_FILE)
    unreachable = AuditRecorder(RefusingLog(StoreUnavailableError("down")), pending=pending, actor="t")
    unreachable.ready(AuditAction.KEY_REVOKE)
    unreachable.ready(AuditAction.AUTO_ROLLBACK)
    with pytest.raises(StoreUnavailableError):
        unreachable.ready(AuditAction.PROMOTE)
    with pytest.raises(AuditWriteError, match=r"could not be written.*was done all the same"):
        unreachable.record(AuditAction.GATE, "models:/m/1", "r", {})
    assert unreachable.record(AuditAction.AUTO_ROLLBACK, "models:/m/2", "r", {}).queued
    assert pending.count() == 1

    refusing = AuditRecorder(RefusingLog(StoreError("schema behind")), pending=pending, actor="t")
    with pytest.raises(StoreError, match="schema behind"):
        refusing.ready(AuditAction.KEY_CREATE)
    with pytest.raises(AuditWriteError):
        refusing.record(AuditAction.KEY_REVOKE, "acme/1", "r", {})
    assert pending.count() == 1, "a refusing store needs the operator: nothing more is queued"


class ReadOnlyLog(InMemoryAuditLog):
    """Reads work, appends are refused (a read-only role, a full disk): ``ready`` cannot see it coming."""

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("permission denied for table audit_log")


def test_a_key_whose_entry_then_fails_is_revoked_and_never_handed_over(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    recorder = AuditRecorder(ReadOnlyLog(), pending=PendingEntries(tmp_path / PENDING_FILE), actor="t")
    with pytest.raises(AuditWriteError, match=r"no key was created.*permission denied.*before anyone saw it"):
        keys.create(settings, "acme", audit=recorder)
    [record] = keys.listing(settings)
    assert record.revoked
