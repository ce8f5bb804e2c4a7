""":class:`SessionStore` on SQLAlchemy Core, in the decisions' database (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from deskpilot.store.engine import translated
from deskpilot.store.sessions import ConsoleSession, SessionStore
from deskpilot.store.sql_base import SqlBacked
from deskpilot.store.tables import console_sessions


class SqlSessionStore(SqlBacked, SessionStore):
    """Constructing one never connects; the first call checks the schema revision once."""

    def add_session(self, session: ConsoleSession) -> None:
        row = {
            "token_sha256": session.token_sha256,
            "tenant": session.tenant,
            "key_id": session.key_id,
            "role": session.role,
            "created_at": session.created_at,
            "expires_at": session.expires_at,
        }
        with translated("starting a console session", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            conn.execute(sa.insert(console_sessions), [row])

    def get_session(self, token_sha256: str, now: datetime) -> ConsoleSession | None:
        query = sa.select(console_sessions).where(
            console_sessions.c.token_sha256 == token_sha256, console_sessions.c.expires_at > now
        )
        with translated("reading a console session", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            row = conn.execute(query).mappings().first()
        return None if row is None else ConsoleSession(**dict(row))

    def delete_session(self, token_sha256: str) -> bool:
        statement = sa.delete(console_sessions).where(console_sessions.c.token_sha256 == token_sha256)
        with translated("ending a console session", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            return bool(conn.execute(statement).rowcount)

    def delete_expired(self, now: datetime) -> int:
        statement = sa.delete(console_sessions).where(console_sessions.c.expires_at <= now)
        with translated("removing expired console sessions", self._url), self._engine.begin() as conn:
            self._check_schema(conn)
            return int(conn.execute(statement).rowcount or 0)
