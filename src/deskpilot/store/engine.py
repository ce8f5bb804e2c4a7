"""Engines per dialect and the one place where database exceptions become DeskPilot errors."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine

from deskpilot.errors import DeskPilotError, StoreError, StoreUnavailableError
from deskpilot.store.files import tighten

SUPPORTED = ("sqlite", "postgresql")

# Errors that mean "the database is not there right now" rather than "this statement is wrong".
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)


def parse_url(url: str) -> URL:
    """A store URL, with ``postgresql://`` meaning psycopg 3 (the driver we ship, not psycopg2)."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise StoreError(f"not a database URL: {error}") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise StoreError(
            f"unsupported store database {parsed.get_backend_name()!r}; use sqlite:///PATH or postgresql://..."
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def make_engine(url: str, *, busy_timeout_s: float = 5.0, connect_timeout_s: int = 5) -> Engine:
    """An engine tuned per dialect: SQLite in WAL mode, shared across threads; PostgreSQL with pre-ping,
    so that connections broken by a database restart are replaced instead of failing a request."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": busy_timeout_s}
        )
        path = sqlite_path(parsed)
        watch = None if path is None else _FileWatch(path)
        if watch is not None:
            tighten_sqlite_files(watch.path)
            watch.see()
            _WATCHES[engine] = watch
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s, watch))
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout_s})


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (absolute), or ``None`` for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().absolute()


def tighten_sqlite_files(path: Path) -> None:
    """Make a SQLite database and its ``-wal`` and ``-shm`` files 0600 (SQLite creates the latter two with
    the database file's mode, so new ones follow)."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        tighten(candidate)


@dataclass
class _FileWatch:
    """The SQLite file an engine opened first, to tell when the path names another file (or none): pooled
    connections would go on writing to the old, deleted inode, and nothing would ever read it."""

    path: Path
    identity: tuple[int, int] | None = None

    def see(self) -> None:
        if self.identity is None:
            try:
                found = self.path.stat()
            except FileNotFoundError:
                return
            self.identity = (found.st_dev, found.st_ino)

    def problem(self) -> tuple[str, str] | None:
        """(public message, message with the path) when the file was deleted or replaced."""
        if self.identity is None:
            return None
        try:
            found = self.path.stat()
        except FileNotFoundError:
            what = "deleted"
        else:
            if (found.st_dev, found.st_ino) == self.identity:
                return None
            what = "replaced"
        public = (
            f"the store's database file was {what} after the store opened it: "
            "restart to use the file there now"
        )
        return public, f"{public} ({self.path})"


_WATCHES: weakref.WeakKeyDictionary[Engine, _FileWatch] = weakref.WeakKeyDictionary()


def sqlite_file_problem(engine: Engine) -> tuple[str, str] | None:
    """(public message, detail) when the SQLite file an engine opened was deleted or replaced since."""
    watch = _WATCHES.get(engine)
    return None if watch is None else watch.problem()


def _sqlite_pragmas(busy_timeout_s: float, watch: _FileWatch | None) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if watch is not None:
            watch.see()
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers run beside the writer; NORMAL is durable across application crashes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return on_connect


@contextmanager
def translated(action: str, url: URL) -> Iterator[None]:
    """Re-raise database exceptions as :class:`StoreUnavailableError` or :class:`StoreError`."""
    try:
        yield
    except DeskPilotError:
        raise
    except exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        details = {"database": safe_url(url), "reason": reason}
        invalidated = isinstance(error, exc.DBAPIError) and error.connection_invalidated
        if isinstance(error, _UNAVAILABLE) or invalidated:
            raise StoreUnavailableError(
                f"the store at {safe_url(url)} is unavailable while {action}: {reason}", details=details
            ) from error
        raise StoreError(f"the store failed while {action}: {reason}", details=details) from error


def without_location(message: str, details: dict[str, Any]) -> str:
    """A store error's message with the database's URL (or file) left out, for a page anyone may read."""
    database = details.get("database")
    if not isinstance(database, str) or not database:
        return message
    message = message.replace(f" at {database}", "").replace(database, "the database")
    path = sqlite_path(parse_url(database)) if database.startswith("sqlite") else None
    return message if path is None else message.replace(str(path), "the database file")
