"""Engines per dialect and the one place where database exceptions become DeskPilot errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine

from deskpilot.errors import DeskPilotError, StoreError, StoreUnavailableError

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
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout_s})


def _sqlite_pragmas(busy_timeout_s: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
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
