"""Back up and restore a SQLite store file.

A backup is a copy made with SQLite's online backup API in one step: one read transaction, so the copy is
consistent while the service goes on writing (in WAL mode readers do not block the writer). The copy is
switched out of WAL mode, so the dump is one self-contained file, and passes ``PRAGMA integrity_check``.

A restore never writes into the store file: the dump is checked and migrated in a file beside it, which
then replaces the store in one ``rename``. Before that the old file is locked exclusively, which fails while
any other process (the service, another command) has it open, and switched out of WAL mode, so that no
write-ahead log of the old file is left to be replayed into the new one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from deskpilot.errors import StoreError
from deskpilot.store.backup import StoreFacts, store_facts
from deskpilot.store.engine import tighten_sqlite_files
from deskpilot.store.files import PRIVATE_FILE
from deskpilot.store.migrate import upgrade

LOCK_TIMEOUT_S = 2.0
_SIDE_FILES = ("-wal", "-shm", "-journal")


def snapshot(source: Path, dest: Path, *, busy_timeout_s: float = 30.0) -> StoreFacts:
    """Copy the live database ``source`` to ``dest`` consistently, check it, and read its facts."""
    dest.touch(mode=PRIVATE_FILE, exist_ok=False)
    try:
        with (
            _closing(sqlite3.connect(source, timeout=busy_timeout_s)) as src,
            _closing(sqlite3.connect(dest)) as dst,
        ):
            src.backup(dst)  # pages=-1: the whole database under one read lock
    except sqlite3.Error as error:
        raise StoreError(
            f"{source}: the online backup failed: {error}", details={"file": str(source)}
        ) from None
    return check(dest, what=f"the copy of {source}")


def check(path: Path, *, what: str) -> StoreFacts:
    """Put ``path`` in rollback-journal mode, run ``PRAGMA integrity_check`` and read the store's facts;
    :class:`StoreError` naming ``what`` when it is not a sound SQLite database."""
    try:
        with _closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{what} is not a usable SQLite database: {error}") from None
    if problems != ["ok"]:
        raise StoreError(
            f"{what} fails PRAGMA integrity_check: {'; '.join(problems[:3])}",
            details={"problems": problems[:20]},
        )
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return store_facts(conn)
    except sa.exc.SQLAlchemyError as error:
        raise StoreError(f"{what} cannot be read as a DeskPilot store: {_reason(error)}") from None
    finally:
        engine.dispose()


def facts_of(path: Path) -> StoreFacts:
    """The facts of an existing store file, read without changing its journal mode."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 5.0})
    try:
        with engine.connect() as conn:
            return store_facts(conn)
    except sa.exc.SQLAlchemyError as error:
        raise StoreError(
            f"{path}: cannot read the store: {_reason(error)}", details={"file": str(path)}
        ) from None
    finally:
        engine.dispose()


def stage(dump: Path) -> tuple[StoreFacts, str | None]:
    """Check a restored dump in place and migrate it to this code's head: (facts before, revision after).
    The file ends in rollback-journal mode, every change in it, so that one rename moves all of it."""
    facts = check(dump, what=f"the backup's database ({dump.name})")
    revision = upgrade(f"sqlite:///{dump}")
    with _closing(sqlite3.connect(dump, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    return facts, revision


def replace(staged: Path, target: Path) -> None:
    """Put ``staged`` in place of ``target`` atomically, once no other process holds ``target`` open."""
    with _exclusive(target):
        staged.replace(target)
        for suffix in _SIDE_FILES:  # left by the old file; a new WAL must start empty
            target.with_name(target.name + suffix).unlink(missing_ok=True)
    tighten_sqlite_files(target)


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    if not target.exists():
        for suffix in _SIDE_FILES:
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        yield
        return
    conn = sqlite3.connect(target, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    try:
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("COMMIT")  # the lock stays: locking_mode is EXCLUSIVE
            conn.execute("PRAGMA journal_mode=DELETE")  # folds the old WAL in and removes it
        except sqlite3.DatabaseError as error:
            if _busy(error):
                raise StoreError(
                    f"{target} is in use ({error}): stop the service and any other deskpilot process using "
                    "this store, then restore again; the store is unchanged",
                    details={"file": str(target)},
                ) from None
            # otherwise a damaged file: it is replaced all the same, and its side files go with it
        yield
    finally:
        conn.close()


@contextlib.contextmanager
def _closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``sqlite3``'s own context manager commits but does not close."""
    try:
        yield conn
    finally:
        conn.close()


def _busy(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _reason(error: sa.exc.SQLAlchemyError) -> str:
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]
