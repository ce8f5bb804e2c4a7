"""The store's backup file: one tar holding a JSON manifest and the engine's dump, and the facts about a
database that the manifest records.

The manifest comes first and says what the dump is (engine, schema revision, row counts, the audit chain's
head, the tool that wrote it) and its SHA-256, so that a restore can refuse a file it cannot trust or
cannot read before it touches the store. The dump is a SQLite database file (``store.sqlite``) or a
``pg_dump --format=custom`` archive (``store.pgdump``). The file is written 0600 and atomically: a failed
backup never leaves a half-written file under the name asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deskpilot.errors import DataError, DataFileNotFoundError, UsageError
from deskpilot.store.files import PRIVATE_FILE, private_dir
from deskpilot.store.migrate import head_revision, known_revisions, revision_of
from deskpilot.store.tables import VERSION_TABLE, audit_log, metadata

FORMAT = "deskpilot-store-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP_NAMES = {"sqlite": "store.sqlite", "postgresql": "store.pgdump"}
_CHUNK = 1 << 20
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoreFacts:
    """What a database holds, read in the same snapshot as its dump."""

    revision: str | None
    tables: dict[str, int]
    """Rows per store table present (the version table excluded)."""
    audit_head: tuple[int, str] | None
    """(seq, hash) of the newest audit entry."""

    @property
    def empty(self) -> bool:
        return not any(self.tables.values())


def store_facts(conn: Connection) -> StoreFacts:
    """Revision, row counts and audit head of the database ``conn`` is on (nothing when it has no schema)."""
    present = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in present:
        return StoreFacts(None, {}, None)
    tables = {
        table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
        for table in metadata.sorted_tables
        if table.name in present
    }
    head = None
    if audit_log.name in present:
        row = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        head = None if row is None else (int(row.seq), str(row.hash))
    return StoreFacts(revision_of(conn), tables, head)


@dataclass(frozen=True)
class Manifest:
    engine: str
    revision: str
    created_at: str
    tables: dict[str, int]
    audit_head: dict[str, Any] | None
    """``{"seq", "hash"}`` of the newest audit entry in the dump."""
    dump: dict[str, Any]
    """``{"name", "sha256", "size", "tool", "tool_major"}``: the member holding the dump and what wrote it."""
    source: str
    """The database backed up, without its password."""
    deskpilot_version: str
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_backup(output: Path, manifest: Manifest, dump: Path) -> None:
    """Write ``output`` (0600, replaced atomically): the manifest, then ``dump`` under its member name."""
    output = output.absolute()
    private_dir(output.parent)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode("utf-8")
            tar.addfile(_member(MANIFEST, len(text)), io.BytesIO(text))
            with dump.open("rb") as source:
                tar.addfile(_member(manifest.dump["name"], dump.stat().st_size), source)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        Path(tmp).replace(output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, PRIVATE_FILE, tarfile.REGTYPE, int(time.time())
    return info


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    return digest.hexdigest(), path.stat().st_size


def read_manifest(path: Path) -> Manifest:
    """The manifest of a backup file; :class:`DataError` naming the file when it is not one."""
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: no such backup file", details={"file": str(path)})
    try:
        with tarfile.open(path, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise _not_a_backup(path, f"its first member is not {MANIFEST}")
            handle = tar.extractfile(first)
            assert handle is not None
            data = json.loads(handle.read().decode("utf-8"))
    except (tarfile.TarError, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _not_a_backup(path, str(error)) from None
    return _parse(path, data)


def _parse(path: Path, data: object) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _not_a_backup(path, f"the manifest does not say format {FORMAT!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(
            f"{path}: backup format version {version!r} is newer than this DeskPilot reads "
            f"({FORMAT_VERSION}): restore it with the DeskPilot release that wrote it",
            details={"file": str(path)},
        )
    try:
        manifest = Manifest(**data)
        dump = manifest.dump
        head = manifest.audit_head
        checks = (
            manifest.engine in DUMP_NAMES,
            isinstance(manifest.revision, str),
            isinstance(manifest.tables, Mapping)
            and all(isinstance(n, int) for n in manifest.tables.values()),
            dump.get("name") == DUMP_NAMES.get(manifest.engine),
            isinstance(dump.get("sha256"), str) and isinstance(dump.get("size"), int),
            isinstance(dump.get("tool_major"), int),
            head is None
            or (_positive(head.get("seq")) and _HASH.fullmatch(str(head.get("hash"))) is not None),
        )
    except (TypeError, AttributeError) as error:
        raise _not_a_backup(path, f"malformed manifest: {error}") from None
    if not all(checks):
        raise _not_a_backup(path, "malformed manifest (engine, revision, tables, audit head or dump)")
    return manifest


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_restorable(path: Path, manifest: Manifest, engine: str) -> None:
    """Refuse a backup of another engine, or of a schema newer than this code's head."""
    if manifest.engine != engine:
        raise UsageError(
            f"{path}: a backup of a {manifest.engine} store cannot be restored into this {engine} store "
            "(DESKPILOT_DATABASE_URL)",
            details={"file": str(path), "engine": manifest.engine},
        )
    if manifest.revision not in known_revisions():
        raise UsageError(
            f"{path}: the backup is at schema revision {manifest.revision}, newer than this DeskPilot's "
            f"head {head_revision()}: restore it with the DeskPilot release that took it, or a newer one",
            details={"file": str(path), "revision": manifest.revision, "head": head_revision()},
        )


def extract_dump(path: Path, manifest: Manifest, dest: Path) -> None:
    """Copy the dump out of the backup into ``dest`` (created 0600), checking its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.getmember(manifest.dump["name"])
            source = tar.extractfile(member)
            if source is None:
                raise _not_a_backup(path, f"{member.name} is not a file")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    except KeyError:
        raise _not_a_backup(path, f"it holds no {manifest.dump['name']}") from None
    except (tarfile.TarError, EOFError) as error:
        raise _not_a_backup(path, str(error)) from None
    found = digest.hexdigest()
    if found != manifest.dump["sha256"] or size != manifest.dump["size"]:
        raise DataError(
            f"{path}: the dump fails its checksum (manifest: sha256 {manifest.dump['sha256'][:16]}…, "
            f"{manifest.dump['size']} bytes; file: {found[:16]}…, {size} bytes): the file is damaged or "
            "was altered, nothing was restored",
            details={"file": str(path), "expected": manifest.dump["sha256"], "found": found},
        )


def _not_a_backup(path: Path, why: str) -> DataError:
    return DataError(f"{path}: not a DeskPilot store backup ({why})", details={"file": str(path)})
