"""The audit chain on SQLAlchemy Core, in the store's database (SQLite or PostgreSQL).

Appends are serialized by the database, not by this process, so that the CLI, the service and a second
host never fork the chain: on PostgreSQL each append takes a transaction-scoped advisory lock (reads go on,
and the service's role needs no more than INSERT and SELECT on the table: a table lock in EXCLUSIVE mode
would need UPDATE or DELETE rights), on SQLite it runs in a ``BEGIN IMMEDIATE`` transaction (the write lock
is taken before the head is read). The UNIQUE constraints on ``seq`` and ``prev_hash`` are the safety net:
were both ever bypassed, a racing append fails on them instead of forking, and is retried on the new head.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection

from deskpilot.errors import StoreError
from deskpilot.store import migrate
from deskpilot.store.audit import (
    GENESIS_HASH,
    AuditAnchor,
    AuditEntry,
    AuditLog,
    AuditSeal,
    UnreadableRow,
    VerifyResult,
    check_chain,
    new_entry,
)
from deskpilot.store.engine import make_engine, parse_url, safe_url, translated
from deskpilot.store.tables import audit_log

_WRITE = "deskpilot_audit_write"
_PAGE = 1000
_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
# pg_advisory_xact_lock's key for appends: the bytes of "dpaudit1" as a signed 64-bit integer.
APPEND_LOCK_KEY = int.from_bytes(b"dpaudit1", "big", signed=True)


class SqlAuditLog(AuditLog):
    """Constructing one never connects; the first call checks the schema revision, as :class:`SqlStore`
    does, and asks for ``deskpilot store migrate`` when the database is behind."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_s: float = 5.0,
        connect_timeout_s: int = 5,
        attempts: int = 5,
        seal: AuditSeal | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._url = parse_url(url)
        self._engine = make_engine(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s)
        self._sqlite = self._url.get_backend_name() == "sqlite"
        if self._sqlite:
            # pysqlite opens transactions on its own, always DEFERRED; take that over to say IMMEDIATE.
            event.listen(self._engine, "connect", _driver_autocommit)
            event.listen(self._engine, "begin", _sqlite_begin)
        self._attempts = attempts
        self._schema_checked = False
        self.seal = seal
        at = audit_log.c.at
        self._columns = [
            audit_log.c.seq,
            sa.type_coerce(at, sa.String()).label("at") if self._sqlite else at,
            audit_log.c.actor,
            audit_log.c.action,
            audit_log.c.target,
            audit_log.c.reason,
            sa.cast(audit_log.c.payload, sa.Text()).label("payload"),
            audit_log.c.prev_hash,
            audit_log.c.hash,
            audit_log.c.key_id,
            audit_log.c.mac,
        ]

    @property
    def url(self) -> str:
        return safe_url(self._url)

    @property
    def location(self) -> str:
        """The database without its role: the runtime role, an auditor's read-only role and the owner
        see one log, and one set of recorded heads."""
        url = self._url
        return sa.engine.URL.create(
            url.drivername, host=url.host, port=url.port, database=url.database
        ).render_as_string()

    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any] | None = None
    ) -> AuditEntry:
        with translated("appending to the audit log", self._url):
            for attempt in range(1, self._attempts + 1):
                try:
                    entry = self._append_once(actor, action, target, reason, payload)
                except (exc.IntegrityError, exc.OperationalError) as error:
                    if attempt == self._attempts or not _retryable(error):
                        raise
                    time.sleep(random.uniform(0.005, 0.02 * 2**attempt))
                    continue
                self._witness(entry)
                return entry
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_once(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any] | None
    ) -> AuditEntry:
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                self._check_schema(conn)
                if not self._sqlite:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
                last = conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.mac)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                ).one_or_none()
                prev_seq, prev_hash = (0, GENESIS_HASH) if last is None else (int(last.seq), last.hash)
                entry = new_entry(
                    prev_seq,
                    prev_hash,
                    actor=actor,
                    action=action,
                    target=target,
                    reason=reason,
                    payload=payload,
                )
                entry = self._sealed(entry, last is not None and last.mac is not None)
                conn.execute(sa.insert(audit_log).values(_row(entry)))
        return entry

    def entries(self, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        with translated("reading the audit log", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            return [_readable(row) for row in self._scan(conn, since_seq, limit)]

    def head(self) -> AuditEntry | None:
        query = sa.select(*self._columns).order_by(audit_log.c.seq.desc()).limit(1)
        with translated("reading the audit log", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            row = conn.execute(query).one_or_none()
        return None if row is None else _readable(self._parse(row))

    def verify(self, anchor: AuditAnchor | None = None) -> VerifyResult:
        with translated("verifying the audit log", self._url), self._engine.connect() as conn:
            self._check_schema(conn)
            recorded = self._recorded()
            return check_chain(self._scan(conn), anchor, seal=self.seal, recorded=recorded)

    def close(self) -> None:
        self._engine.dispose()

    def _scan(
        self, conn: Connection, since_seq: int = 0, limit: int | None = None
    ) -> Iterator[AuditEntry | UnreadableRow]:
        """Rows by ``seq``, a page at a time, so that verifying a long log holds one page in memory."""
        after, left = since_seq, limit
        while left is None or left > 0:
            size = _PAGE if left is None else min(_PAGE, left)
            query = (
                sa.select(*self._columns).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(size)
            )
            rows = conn.execute(query).all()
            for row in rows:
                yield self._parse(row)
            if len(rows) < size or not isinstance(rows[-1].seq, int):
                return
            after = rows[-1].seq
            left = None if left is None else left - len(rows)

    def _parse(self, row: sa.Row[Any]) -> AuditEntry | UnreadableRow:
        """An entry, or what makes the row unreadable: only a tampered SQLite row can have a wrong type."""
        seq = row.seq if isinstance(row.seq, int) else None
        try:
            if seq is None:
                raise ValueError(f"seq is {row.seq!r}, not an integer")
            at = _sqlite_time(row.at) if self._sqlite else row.at
            payload = json.loads(row.payload)
            if not isinstance(payload, dict):
                raise ValueError("payload is not a JSON object")
        except (ValueError, TypeError) as error:
            return UnreadableRow(seq, str(error))
        return AuditEntry(
            seq=seq,
            at=at.astimezone(UTC),
            actor=row.actor,
            action=row.action,
            target=row.target,
            reason=row.reason,
            payload=payload,
            prev_hash=row.prev_hash,
            hash=row.hash,
            key_id=row.key_id,
            mac=row.mac,
        )

    def _check_schema(self, conn: Connection) -> None:
        if not self._schema_checked:
            migrate.require_head(conn, self.url)
            self._schema_checked = True


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "payload": entry.payload,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "key_id": entry.key_id,
        "mac": entry.mac,
    }


def _readable(row: AuditEntry | UnreadableRow) -> AuditEntry:
    if isinstance(row, UnreadableRow):
        raise StoreError(
            f"audit log entry {row.seq} is unreadable ({row.why}): run `deskpilot audit verify`",
            details={"seq": row.seq},
        )
    return row


def _sqlite_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"time is {value!r}, not a timestamp")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _retryable(error: exc.DBAPIError) -> bool:
    """A lost race (the UNIQUE net) or a lock that timed out; not a broken database."""
    if isinstance(error, exc.IntegrityError):
        return True
    if getattr(error.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    message = str(error.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")
