"""``deskpilot store backup`` and ``store restore`` on a real SQLite file and a real PostgreSQL database:
a backup taken while a writer writes restores to exactly the rows it counted, with an audit chain that
verifies; a damaged file, a backup of a newer schema, a store that holds data (without ``--yes``) and a
restore that fails part-way all leave the store as it was."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from deskpilot.config import Settings
from deskpilot.domain import Route
from deskpilot.errors import ConfigError, DataError, DataFileNotFoundError, StoreError, UsageError
from deskpilot.store import backup_pg, migrate
from deskpilot.store.audit import PROBLEM_TRUNCATED, AuditAction
from deskpilot.store.backup import MANIFEST, read_manifest
from deskpilot.store.engine import parse_url
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore
from deskpilot.workflows.audit import open_audit, verify_chain
from deskpilot.workflows.backup import backup_store, restore_store
from tests.helpers import fresh_database, run_cli

AUDIT_KEY = "5e" * 32
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def settings_for(home: Path, url: str | None = None, owner: str | None = None) -> Settings:
    return Settings(home=home, database_url=url, migration_database_url=owner, audit_key=[AUDIT_KEY])


def decision(i: int, prefix: str = "req") -> DecisionRecord:
    return DecisionRecord(
        tenant="acme" if i % 3 else "globex",
        request_id=f"{prefix}-{i}",
        ticket_id=f"T-{i}",
        model_name="deskpilot-triage",
        model_version="3",
        intent="card_arrival",
        confidence=0.5 + (i % 50) / 100,
        route=Route.AUTO if i % 2 else Route.HUMAN,
        latency_ms=2.5,
        text=f"where is my card, ticket {i} " + "x" * 200,
        alternatives=(("lost_card", 0.25),),
        created_at=T0 + timedelta(seconds=i),
    )


def populate(settings: Settings, decisions: int = 300, audited: int = 3) -> None:
    """Decisions, one verdict and a few audit entries in the store the settings point at."""
    url = settings.resolved_database_url
    migrate.upgrade(settings.migration_database_url or url)
    store = SqlStore(url)
    try:
        store.write_decisions([decision(i) for i in range(decisions)])
        store.add_feedback("acme", "req-1", "lost_card")
    finally:
        store.close()
    audit = open_audit(settings, actor="tests")
    for i in range(audited):
        audit.record(AuditAction.GATE, f"models:/deskpilot-triage/{i}", "gate passed", {"i": i})


def count(url: str, table: str = "decisions") -> int:
    engine = sa.create_engine(parse_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


@dataclass
class Writer:
    """Writes decisions in small batches until stopped, as the service's writer does."""

    url: str
    written: int = 0
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        store = SqlStore(self.url)
        try:
            while not self.stop.is_set():
                batch = [decision(self.written + j, prefix="live") for j in range(5)]
                store.write_decisions(batch)
                self.written += len(batch)
        except BaseException as error:  # reported by the test
            self.errors.append(error)
        finally:
            store.close()


def backup_while_writing(settings: Settings, output: Path) -> tuple[int, Writer]:
    """Back up while a writer thread writes; (decisions the manifest counted, the writer)."""
    writer = Writer(settings.resolved_database_url)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        while writer.written < 20 and not writer.errors:
            threading.Event().wait(0.01)
        done = backup_store(settings, output)
        written_at_end = writer.written
    finally:
        writer.stop.set()
        thread.join(timeout=30)
    assert not writer.errors, writer.errors
    counted = done.manifest.tables["decisions"]
    assert 300 + 20 <= counted <= 300 + written_at_end + 5
    return counted, writer


def rewrite(backup: Path, *, manifest: dict[str, object] | None = None, dump: bytes | None = None) -> None:
    """Replace the manifest or the dump inside a backup file (the manifest's checksum is not updated)."""
    with tarfile.open(backup) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(backup, "w") as tar:
        for member, old in members:
            new = old
            if member.name == MANIFEST and manifest is not None:
                new = json.dumps(manifest).encode()
            elif member.name != MANIFEST and dump is not None:
                new = dump
            member.size = len(new)
            tar.addfile(member, io.BytesIO(new))


def manifest_of(backup: Path) -> dict[str, object]:
    return read_manifest(backup).to_dict()


def with_checksum(manifest: dict[str, object], dump: bytes) -> dict[str, object]:
    import hashlib

    dump_info = dict(manifest["dump"])  # type: ignore[call-overload]
    dump_info.update(sha256=hashlib.sha256(dump).hexdigest(), size=len(dump))
    return {**manifest, "dump": dump_info}


def dump_bytes(backup: Path) -> bytes:
    with tarfile.open(backup) as tar:
        member = next(m for m in tar.getmembers() if m.name != MANIFEST)
        return tar.extractfile(member).read()  # type: ignore[union-attr]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".restore-" in p.name or p.name.endswith(".tmp"))


# --- SQLite -----------------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Settings:
    settings = settings_for(tmp_path / "source")
    populate(settings)
    return settings


def test_a_backup_taken_while_the_service_writes_restores_into_a_fresh_home(
    source: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "backups" / "store.dpbackup"
    counted, writer = backup_while_writing(source, output)
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    assert count(source.resolved_database_url) == 300 + writer.written > counted  # the writer went on

    manifest = read_manifest(output)
    assert (manifest.engine, manifest.revision) == ("sqlite", migrate.head_revision())
    assert manifest.tables["feedback"] == 1
    assert manifest.tables["audit_log"] == 3
    assert manifest.audit_head is not None
    assert manifest.audit_head["seq"] == 3

    target = settings_for(tmp_path / "fresh")
    restored = restore_store(target, output)
    assert restored.ok, restored.to_dict()
    assert restored.previous is None
    assert restored.tables == manifest.tables
    assert count(target.resolved_database_url) == counted
    assert restored.audit is not None
    assert restored.audit.result.checked == 3
    assert verify_chain(target).result.ok
    with sqlite3.connect(target.resolved_database_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    store = SqlStore(target.resolved_database_url)
    try:
        assert store.get_decision("acme", "req-1") is not None
        assert [f.correct_intent for f in store.feedback("acme")] == ["lost_card"]
    finally:
        store.close()
    assert leftovers(tmp_path / "fresh") == []
    assert leftovers(tmp_path / "backups") == []


def test_the_cli_round_trip_asks_before_replacing_a_store_and_refuses_a_damaged_file(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli("store", "migrate", home=first).returncode == 0
    created = run_cli("keys", "create", "--tenant", "acme", home=first)
    assert created.returncode == 0, created.stderr
    store = SqlStore(f"sqlite:///{first / 'deskpilot.db'}")
    store.write_decisions([decision(i) for i in range(25)])
    store.close()

    output = tmp_path / "nightly.dpbackup"
    backed_up = run_cli("store", "backup", "--output", output, "--json", home=first)
    assert backed_up.returncode == 0, backed_up.stderr
    report = json.loads(backed_up.stdout)
    assert report["tables"]["decisions"] == 25
    assert report["tables"]["audit_log"] == 1
    assert report["output"] == str(output)

    # The audit key travels with the deployment's secrets, not in the backup.
    second.mkdir(mode=0o700)
    (second / "audit.key").write_bytes((first / "audit.key").read_bytes())
    restored = run_cli("store", "restore", "--input", output, "--json", home=second)
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    assert result["ok"] is True
    assert result["tables"]["decisions"] == 25
    assert result["audit"]["ok"] is True
    assert result["audit"]["checked"] == 1
    verified = run_cli("audit", "verify", home=second)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    again = run_cli("store", "restore", "--input", output, home=second)
    assert again.returncode == 2
    assert "not without --yes; the store is unchanged" in again.stderr
    assert "Traceback" not in again.stderr
    confirmed = run_cli("store", "restore", "--input", output, "--yes", home=second)
    assert confirmed.returncode == 0, confirmed.stderr
    assert "audit chain intact: 1 entry" in confirmed.stdout
    assert "replaced a store of 26 rows" in confirmed.stdout

    data = bytearray(output.read_bytes())
    with tarfile.open(output) as tar:
        member = next(m for m in tar.getmembers() if m.name != MANIFEST)
    data[member.offset_data + 4096] ^= 0xFF
    output.write_bytes(bytes(data))
    damaged = run_cli("store", "restore", "--input", output, "--yes", home=second)
    assert damaged.returncode == 1
    assert f"{output}: the dump fails its checksum" in damaged.stderr
    assert "Traceback" not in damaged.stderr
    assert count(f"sqlite:///{second / 'deskpilot.db'}") == 25


def test_a_damaged_or_foreign_file_is_refused_before_the_store_is_touched(
    source: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "store.dpbackup"
    backup_store(source, output)
    target = settings_for(tmp_path / "target")

    with pytest.raises(DataFileNotFoundError, match="no such backup file"):
        restore_store(target, tmp_path / "missing.dpbackup")
    stray = tmp_path / "notes.txt"
    stray.write_text("not a backup")
    with pytest.raises(DataError, match=r"notes\.txt: not a DeskPilot store backup"):
        restore_store(target, stray)

    original = dump_bytes(output)
    rewrite(output, dump=original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(DataError, match="fails its checksum") as refused:
        restore_store(target, output)
    assert str(output) in refused.value.message
    assert not (tmp_path / "target" / "deskpilot.db").exists()
    assert leftovers(tmp_path / "target") == []


def test_a_backup_of_a_newer_schema_or_another_engine_is_refused(source: Settings, tmp_path: Path) -> None:
    output = tmp_path / "store.dpbackup"
    backup_store(source, output)
    target = settings_for(tmp_path / "target")

    rewrite(output, manifest={**manifest_of(output), "revision": "9999"})
    with pytest.raises(UsageError, match="revision 9999, newer than this DeskPilot's head") as refused:
        restore_store(target, output)
    assert str(output) in refused.value.message
    assert not (tmp_path / "target" / "deskpilot.db").exists()

    rewrite(output, manifest={**manifest_of(output), "revision": migrate.head_revision()})
    elsewhere = settings_for(tmp_path / "pg", url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(
        UsageError, match="a backup of a sqlite store cannot be restored into this postgresql"
    ):
        restore_store(elsewhere, output)
    crossed = settings_for(
        tmp_path / "pg",
        url="postgresql+psycopg://app@127.0.0.1:1/staging",
        owner="postgresql+psycopg://owner@127.0.0.1:1/production",
    )
    with pytest.raises(ConfigError, match="must name the same database"):
        restore_store(crossed, output)


def test_a_store_that_holds_data_is_replaced_only_when_confirmed(source: Settings, tmp_path: Path) -> None:
    output = tmp_path / "store.dpbackup"
    backup_store(source, output)
    url = source.resolved_database_url
    store = SqlStore(url)
    store.write_decisions([decision(i, prefix="after") for i in range(7)])
    store.close()

    questions: list[str] = []

    def decline(question: str) -> bool:
        questions.append(question)
        return False

    with pytest.raises(UsageError, match="not without --yes; the store is unchanged"):
        restore_store(source, output)
    with pytest.raises(UsageError):
        restore_store(source, output, confirm=decline)
    assert "holds 311 rows (3 audit_log, 307 decisions, 1 feedback)" in questions[0]
    assert count(url) == 307

    restored = restore_store(source, output, confirm=lambda _question: True)
    assert count(url) == 300
    assert restored.previous is not None
    assert restored.previous.tables["decisions"] == 307
    assert restored.ok


def test_a_damaged_store_is_replaced_once_confirmed(source: Settings, tmp_path: Path) -> None:
    output = tmp_path / "store.dpbackup"
    backup_store(source, output)
    damaged = settings_for(tmp_path / "damaged")
    Path(damaged.home).mkdir(mode=0o700)
    db = Path(damaged.home) / "deskpilot.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(UsageError, match=r"cannot be read .*not without --yes"):
        restore_store(damaged, output)
    restored = restore_store(damaged, output, yes=True)
    assert restored.ok
    assert count(damaged.resolved_database_url) == 300


def test_a_failed_restore_leaves_the_old_store_as_it_was(source: Settings, tmp_path: Path) -> None:
    output = tmp_path / "store.dpbackup"
    backup_store(source, output)
    url = source.resolved_database_url
    home = Path(source.home)

    garbage = b"SQLite format 3\x00" + os.urandom(8192)
    rewrite(output, manifest=with_checksum(manifest_of(output), garbage), dump=garbage)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        restore_store(source, output, yes=True)
    assert count(url) == 300
    assert verify_chain(source).result.ok
    assert leftovers(home) == []

    good = tmp_path / "good.dpbackup"
    backup_store(source, good)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"))  # the service, still running
    try:
        holder.execute("SELECT count(*) FROM decisions").fetchone()
        with pytest.raises(StoreError, match=r"is in use .*stop the service"):
            restore_store(source, good, yes=True)
    finally:
        holder.close()
    assert count(url) == 300
    assert leftovers(home) == []


def test_an_older_backup_is_migrated_and_a_rewound_chain_is_reported(tmp_path: Path) -> None:
    old = settings_for(tmp_path / "old")
    migrate.upgrade(old.resolved_database_url, "0006")
    output = tmp_path / "old.dpbackup"
    assert backup_store(old, output).manifest.revision == "0006"
    fresh = settings_for(tmp_path / "fresh")
    restored = restore_store(fresh, output)
    assert (restored.backup.revision, restored.revision) == ("0006", migrate.head_revision())
    assert restored.ok

    # Restoring in place a backup older than the newest audit entries: the ledger still names them.
    current = settings_for(tmp_path / "current")
    populate(current, decisions=10, audited=2)
    backup_store(current, output)
    open_audit(current, actor="tests").record(AuditAction.ROLLBACK, "models:/deskpilot-triage/1", "oops", {})
    rewound = restore_store(current, output, yes=True)
    assert not rewound.ok
    assert rewound.audit is not None
    assert rewound.audit.result.problem == PROBLEM_TRUNCATED
    assert rewound.hint is not None
    assert "records audit entries written after this backup" in rewound.hint


def test_the_postgres_tools_are_found_by_version_and_never_see_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conninfo, env = backup_pg.libpq(
        parse_url("postgresql+psycopg://app:s3cr%40t@db.internal:6432/desk?sslmode=require")
    )
    assert conninfo == "postgresql://app@db.internal:6432/desk?sslmode=require"
    assert env["PGPASSWORD"] == "s3cr@t"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(backup_pg, "CLIENT_DIRS", tmp_path / "no-clients")
    with pytest.raises(ConfigError, match=r"pg_dump is not on PATH nor under .*postgresql-client-15"):
        backup_pg.find_tool("pg_dump", at_least=15)
    old = bin_dir / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.9'\n")
    old.chmod(0o755)
    with pytest.raises(ConfigError, match="is PostgreSQL 13, older than the 15"):
        backup_pg.find_tool("pg_dump", at_least=15)
    newer = tmp_path / "no-clients" / "16" / "bin" / "pg_dump"
    newer.parent.mkdir(parents=True)
    newer.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 16.4'\n")
    newer.chmod(0o755)
    assert backup_pg.find_tool("pg_dump", at_least=15).path == newer


# --- PostgreSQL -------------------------------------------------------------------------------------------


@pytest.fixture
def other_postgres_url(postgres_url: str) -> Iterator[str]:
    """A second fresh database beside ``postgres_url``, to restore into."""
    with fresh_database(os.environ["DESKPILOT_TEST_DATABASE_URL"]) as url:
        yield url


def test_postgres_round_trip_through_the_cli(
    postgres_url: str, other_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = settings_for(tmp_path / "source", url=postgres_url)
    populate(source)
    output = tmp_path / "pg.dpbackup"
    counted, _writer = backup_while_writing(source, output)
    manifest = read_manifest(output)
    assert manifest.engine == "postgresql"
    assert manifest.dump["tool"].startswith("pg_dump (PostgreSQL)")

    monkeypatch.setenv("DESKPILOT_DATABASE_URL", other_postgres_url)
    monkeypatch.setenv("DESKPILOT_AUDIT_KEY", AUDIT_KEY)
    restored = run_cli("store", "restore", "--input", output, "--json", home=tmp_path / "target")
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    assert result["ok"] is True
    assert result["tables"] == manifest.tables
    assert result["audit"]["checked"] == 3
    assert count(other_postgres_url) == counted
    verified = run_cli("audit", "verify", home=tmp_path / "target")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    refused = run_cli("store", "restore", "--input", output, home=tmp_path / "target")
    assert refused.returncode == 2
    assert "not without --yes" in refused.stderr
    again = run_cli("store", "restore", "--input", output, "--yes", home=tmp_path / "target")
    assert again.returncode == 0, again.stderr
    assert count(other_postgres_url) == counted


def test_postgres_restore_that_fails_part_way_rolls_back(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    source = settings_for(tmp_path / "source", url=postgres_url)
    populate(source)
    output = tmp_path / "pg.dpbackup"
    backup_store(source, output)
    target = settings_for(tmp_path / "target", url=other_postgres_url)
    populate(target, decisions=40, audited=1)
    engine = sa.create_engine(parse_url(other_postgres_url), poolclass=NullPool)
    with engine.begin() as conn:  # an operator's view: the restore's DROP TABLE decisions fails on it
        conn.execute(sa.text("CREATE VIEW daily AS SELECT count(*) AS n FROM decisions"))
    engine.dispose()

    def intact() -> None:
        assert count(other_postgres_url) == 40
        assert count(other_postgres_url, "audit_log") == 1
        assert count(other_postgres_url, "daily") == 1
        assert verify_chain(target).result.ok

    with pytest.raises(
        StoreError, match=r"pg_restore failed .*the restore rolled back, the store is as it was"
    ):
        restore_store(target, output, yes=True)
    intact()

    whole = dump_bytes(output)  # a cut archive is refused before anything is dropped
    cut = whole[: int(len(whole) * 0.7)]
    rewrite(output, manifest=with_checksum(manifest_of(output), cut), dump=cut)
    with pytest.raises(StoreError, match="pg_restore failed"):
        restore_store(target, output, yes=True)
    intact()


def test_postgres_older_backup_into_a_newer_store_and_the_password_stays_off_argv(
    postgres_url: str, other_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(postgres_url, "0006")
    spy_log = tmp_path / "argv.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        real = backup_pg.find_tool(tool, at_least=0).path
        spy = bin_dir / tool
        spy.write_text(f'#!/bin/sh\necho "$0 $*" >> {spy_log}\nexec {real} "$@"\n')
        spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    output = tmp_path / "old.dpbackup"
    assert backup_store(settings_for(tmp_path / "old", url=postgres_url), output).manifest.revision == "0006"
    target = settings_for(tmp_path / "target", url=other_postgres_url)
    populate(target, decisions=5, audited=0)
    engine = sa.create_engine(parse_url(other_postgres_url), poolclass=NullPool)
    with engine.begin() as conn:  # a table of a later revision, holding rows from after the backup
        conn.execute(
            sa.text(
                "INSERT INTO llm_budget (tenant, period, reserved_tokens, reserved_cost, spent_tokens, "
                "spent_cost) VALUES ('acme', '2026-03-01', 0, 0, 5, 0)"
            )
        )
    engine.dispose()

    restored = restore_store(target, output, yes=True)
    assert restored.revision == migrate.head_revision()
    assert "llm_budget" in restored.dropped
    assert count(other_postgres_url, "llm_budget") == 0
    assert count(other_postgres_url) == 0
    assert restored.ok

    argv = spy_log.read_text()
    assert "pg_dump" in argv
    assert "pg_restore" in argv
    assert "--snapshot=" in argv
    for url in (postgres_url, other_postgres_url):
        password = sa.make_url(url).password
        assert password
        assert f":{password}@" not in argv
