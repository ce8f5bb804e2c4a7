"""What every SQL-backed store shares: an engine that connects lazily, the dialect's INSERT (for upserts),
and a check, once per instance, that the database is at the schema revision this code expects."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from deskpilot.store import migrate
from deskpilot.store.engine import make_engine, parse_url, safe_url


class SqlBacked:
    """Constructing one never connects, so a service can start while its database is down; the first call
    that reaches the database checks the schema revision (once)."""

    def __init__(self, url: str, *, busy_timeout_s: float = 5.0, connect_timeout_s: int = 5) -> None:
        self._url = parse_url(url)
        self._engine = make_engine(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s)
        dialect = postgresql if self._url.get_backend_name() == "postgresql" else sqlite
        self._insert: Any = dialect.insert
        self._schema_checked = False

    @property
    def url(self) -> str:
        """The database URL with any password hidden, for logs and status pages."""
        return safe_url(self._url)

    def close(self) -> None:
        self._engine.dispose()

    def _check_schema(self, conn: Connection) -> None:
        if self._schema_checked:
            return
        migrate.require_head(conn, self.url)
        self._schema_checked = True
