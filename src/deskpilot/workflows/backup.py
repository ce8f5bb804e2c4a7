"""Back up the store into one file, and restore it: ``deskpilot store backup`` and ``store restore``.

A backup is a consistent copy taken while the service runs (SQLite's backup API, or ``pg_dump`` in an
exported snapshot) with a manifest: engine, schema revision, row counts, the audit chain's head, and the
dump's SHA-256 (:mod:`deskpilot.store.backup`). A restore refuses a file that fails its checksum, a backup
of another engine, or one of a schema newer than this code; it asks before replacing a store that holds
data, and fails without changing the store: SQLite is restored into a file beside the store, checked and
migrated there, then swapped in; PostgreSQL is restored in one transaction. Afterwards the store is
migrated to this code's head and its audit chain verified against this home's keys and ledger, and
against the head the backup recorded.

The audit key and the ledger are not in the backup (they must not sit with the data they protect), nor are
the API keys (``keys.jsonl``): back those up with the deployment's secrets.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskpilot import __version__
from deskpilot.config import Settings
from deskpilot.errors import ConfigError, DeskPilotError, StoreError, UsageError
from deskpilot.store import backup_pg, backup_sqlite
from deskpilot.store.audit import PROBLEM_KEY, PROBLEM_TRUNCATED, AuditAnchor
from deskpilot.store.backup import (
    DUMP_NAMES,
    Manifest,
    StoreFacts,
    check_restorable,
    extract_dump,
    file_digest,
    read_manifest,
    write_backup,
)
from deskpilot.store.engine import parse_url, safe_url, sqlite_path
from deskpilot.store.files import private_dir
from deskpilot.workflows.audit import ChainCheck, verify_chain
from deskpilot.workflows.build import existing_store_url
from deskpilot.workflows.schema import migrate_store

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

RUNBOOK = "docs/runbook.md#backup-and-restore"
Confirm = Callable[[str], bool]
Approve = Callable[..., None]  # (previous facts, or None with why the store cannot be read) -> raises or not


@dataclass(frozen=True)
class BackedUp:
    output: Path
    manifest: Manifest

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), **self.manifest.to_dict()}


def backup_store(settings: Settings, output: Path) -> BackedUp:
    """Write a backup of the store the settings point at to ``output`` (replaced atomically, 0600).

    PostgreSQL is dumped through ``DESKPILOT_MIGRATION_DATABASE_URL`` when it is set (the owner sees every
    object), else through ``DESKPILOT_DATABASE_URL``."""
    url = existing_store_url(settings, "nothing to back up")
    source = _owner_url(settings, url)
    parsed = parse_url(source)
    engine = parsed.get_backend_name()
    output = output.absolute()
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder: name the backup file")
    private_dir(output.parent)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
        dump = Path(tmp) / DUMP_NAMES[engine]
        if engine == "sqlite":
            facts = backup_sqlite.snapshot(_sqlite_file(parsed), dump)
            tool, major = f"sqlite3 {sqlite3.sqlite_version}", int(sqlite3.sqlite_version.split(".")[0])
        else:
            facts, pg_tool = backup_pg.dump(source, dump)
            tool, major = pg_tool.version, pg_tool.major
        where = safe_url(parse_url(url))
        if facts.revision is None:
            raise StoreError(
                f"the store at {where} has no DeskPilot schema: nothing to back up",
                details={"database": where},
            )
        digest, size = file_digest(dump)
        manifest = Manifest(
            engine=engine,
            revision=facts.revision,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tables=facts.tables,
            audit_head=None if facts.audit_head is None else _head(*facts.audit_head),
            dump={"name": dump.name, "sha256": digest, "size": size, "tool": tool, "tool_major": major},
            source=where,
            deskpilot_version=__version__,
        )
        write_backup(output, manifest, dump)
    return BackedUp(output, manifest)


@dataclass(frozen=True)
class Restored:
    input: Path
    database: str
    backup: Manifest
    previous: StoreFacts | None
    """What the store held before, when it held anything (it was replaced)."""
    tables: dict[str, int]
    """Rows per table as restored (before migrating)."""
    revision: str | None
    """The schema revision after migrating."""
    audit: ChainCheck | None
    audit_error: str | None = None
    """Why the chain could not be verified at all."""
    dropped: list[str] = field(default_factory=list)
    """PostgreSQL: tables newer than the backup, dropped and created again (empty) by migrating."""

    @property
    def ok(self) -> bool:
        return self.audit is not None and self.audit.result.ok

    @property
    def hint(self) -> str | None:
        """What to do about a chain that does not verify after the restore."""
        if self.audit is None:
            return None
        result = self.audit.result
        if result.problem == PROBLEM_TRUNCATED:
            return (
                f"the ledger {self.audit.ledger} records audit entries written after this backup was taken; "
                "they are not in the restored store. Keep the ledger as evidence and move it aside before "
                f"the next audited action ({RUNBOOK})"
            )
        if result.problem == PROBLEM_KEY:
            return (
                "the entries are signed with an audit key this home does not hold: restore the audit key "
                f"(DESKPILOT_AUDIT_KEY or the key file) from the deployment's secrets ({RUNBOOK})"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        audit = None
        if self.audit is not None:
            audit = {**self.audit.result.to_dict(), "ledger": str(self.audit.ledger), "keys": self.audit.keys}
            audit["queued"] = self.audit.queued
        return {
            "ok": self.ok,
            "input": str(self.input),
            "database": self.database,
            "backup": self.backup.to_dict(),
            "replaced": None if self.previous is None else self.previous.tables,
            "tables": self.tables,
            "revision": self.revision,
            "dropped_tables": self.dropped,
            "audit": audit,
            "audit_error": self.audit_error,
            "hint": self.hint,
        }


def restore_store(
    settings: Settings, source: Path, *, yes: bool = False, confirm: Confirm | None = None
) -> Restored:
    """Restore the backup ``source`` into the store the settings point at (see the module docstring).

    A store that holds rows is replaced only with ``yes`` or when ``confirm`` (asked with a description of
    both) says so; otherwise :class:`UsageError`, with the store unchanged."""
    manifest = read_manifest(source)
    url = settings.resolved_database_url
    target = _owner_url(settings, url)
    parsed = parse_url(target)
    where = safe_url(parse_url(url))
    check_restorable(source, manifest, parsed.get_backend_name())

    def approve(previous: StoreFacts | None, unreadable: str | None = None) -> None:
        if (previous is None and unreadable is None) or yes:
            return
        if previous is None:
            held = f"cannot be read ({unreadable})"
        else:
            held = f"holds {_rows_of(previous.tables)} at revision {previous.revision}"
        question = (
            f"the store at {where} {held}: replace it with the backup of {manifest.created_at} "
            f"({_rows_of(manifest.tables)})?"
        )
        if confirm is None or not confirm(question):
            raise UsageError(
                f"{question[:-1]}: not without --yes; the store is unchanged",
                details={"database": where, "tables": None if previous is None else previous.tables},
            )

    if parsed.get_backend_name() == "sqlite":
        previous, tables, dropped = _restore_sqlite(source, manifest, _sqlite_file(parsed), approve)
    else:
        previous, tables, dropped = _restore_pg(source, manifest, target, approve)
    try:
        revision = migrate_store(settings).revision
    except DeskPilotError as error:
        raise StoreError(
            f"the backup was restored, but migrating it failed: {error.message}; fix that, then run "
            "`deskpilot store migrate`",
            details=error.details,
        ) from error
    anchor = None
    if manifest.audit_head is not None:
        anchor = AuditAnchor(int(manifest.audit_head["seq"]), str(manifest.audit_head["hash"]))
    try:
        check: ChainCheck | None = verify_chain(settings, anchor)
    except DeskPilotError as error:
        return Restored(source, where, manifest, previous, tables, revision, None, error.message, dropped)
    return Restored(source, where, manifest, previous, tables, revision, check, None, dropped)


def _restore_sqlite(
    source: Path, manifest: Manifest, target: Path, approve: Approve
) -> tuple[StoreFacts | None, dict[str, int], list[str]]:
    private_dir(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.restore-") as tmp:
        staged = Path(tmp) / target.name
        extract_dump(source, manifest, staged)
        restored, _ = backup_sqlite.stage(staged)
        _check_counts(source, manifest, restored)
        previous: StoreFacts | None = None
        if target.exists():
            try:
                previous = backup_sqlite.facts_of(target)
            except StoreError as error:
                approve(None, error.message)
            else:
                approve(None if previous.empty else previous)
        backup_sqlite.replace(staged, target)
    return (None if previous is None or previous.empty else previous), restored.tables, []


def _restore_pg(
    source: Path, manifest: Manifest, target: str, approve: Approve
) -> tuple[StoreFacts | None, dict[str, int], list[str]]:
    with tempfile.TemporaryDirectory(prefix="deskpilot-restore-") as tmp:
        archive = Path(tmp) / DUMP_NAMES["postgresql"]
        extract_dump(source, manifest, archive)
        previous = backup_pg.facts(target)
        approve(None if previous.empty else previous)
        dropped = backup_pg.restore(target, archive, archive_major=int(manifest.dump["tool_major"]))
    restored = backup_pg.facts(target)
    _check_counts(source, manifest, restored)
    return (None if previous.empty else previous), restored.tables, dropped


def _check_counts(source: Path, manifest: Manifest, restored: StoreFacts) -> None:
    """The restored rows must be the ones the manifest counted."""
    differ = {
        name: (count, restored.tables.get(name))
        for name, count in manifest.tables.items()
        if restored.tables.get(name) != count
    }
    if differ or restored.revision != manifest.revision:
        raise StoreError(
            f"{source}: the restored database does not match the manifest (revision {restored.revision} "
            f"vs {manifest.revision}; rows differ in {sorted(differ) or 'no table'})",
            details={"file": str(source), "tables": differ},
        )


def _owner_url(settings: Settings, url: str) -> str:
    """The migration role's URL for a PostgreSQL store that has one (it owns, and sees, every table); a
    migration URL naming another database is refused before anything is read or replaced."""
    owner = settings.migration_database_url
    runtime = parse_url(url)
    if not owner or runtime.get_backend_name() != "postgresql":
        return url
    named = parse_url(owner)
    if (named.host, named.port, named.database) != (runtime.host, runtime.port, runtime.database):
        raise ConfigError(
            "DESKPILOT_MIGRATION_DATABASE_URL and DESKPILOT_DATABASE_URL must name the same database "
            f"({safe_url(named)} vs {safe_url(runtime)})"
        )
    return owner


def _sqlite_file(parsed: URL) -> Path:
    path = sqlite_path(parsed)
    if path is None:
        raise UsageError("an in-memory SQLite store cannot be backed up or restored")
    return path


def _head(seq: int, digest: str) -> dict[str, Any]:
    return {"seq": seq, "hash": digest}


def _rows_of(tables: dict[str, int]) -> str:
    shown = ", ".join(f"{count} {name}" for name, count in tables.items() if count)
    return f"{sum(tables.values())} rows ({shown})" if shown else "no rows"
