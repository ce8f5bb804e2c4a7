"""Create and upgrade the store's schema with Alembic, driven from code, and give the service's role
its rights.

The migrations ship inside the package, so ``deskpilot store migrate`` needs no ``alembic.ini`` and works
from an installed wheel. :class:`SqlStore` never creates tables itself: it checks the revision recorded here.

On PostgreSQL the schema belongs to a migration role (``DESKPILOT_MIGRATION_DATABASE_URL``), and the role
the service and the CLI run with (``DESKPILOT_DATABASE_URL``) gets only what it needs
(:func:`grant_runtime`): SELECT and INSERT on ``audit_log``, no more, so that its credentials can neither
delete, update nor truncate the audit chain, nor disable its triggers (that takes the owner). A SQLite
store is a file: it is created 0600 in a 0700 folder, and the file system is its access control.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from deskpilot.errors import StoreError
from deskpilot.store.engine import make_engine, parse_url, sqlite_path, tighten_sqlite_files, translated
from deskpilot.store.files import create_private, private_dir
from deskpilot.store.tables import (
    DATA_TABLES,
    VERSION_TABLE,
    audit_log,
    console_sessions,
    llm_budget,
    monitor_runs,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATE_HINT = "run `deskpilot store migrate` to bring the database up to date"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code; ``env.py`` runs on ``connection`` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision this code knows (the schema it is written against)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError(f"no migrations found under {MIGRATIONS}")
    return head


def known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def revision_of(connection: Connection) -> str | None:
    """The revision a database is at, or ``None`` when it was never migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def require_head(connection: Connection, where: str) -> None:
    """Raise :class:`StoreError` naming the fix unless the database is at the revision this code needs;
    ``where`` is the (password-free) URL for the message."""
    at, head = revision_of(connection), head_revision()
    if at == head:
        return
    if at is None:
        state = "has no DeskPilot store schema"
    elif at in known_revisions():
        state = f"is at schema revision {at}, behind {head}"
    else:
        state = f"is at schema revision {at}, which this DeskPilot does not know (newer code?)"
    raise StoreError(
        f"the store at {where} {state}: {MIGRATE_HINT}",
        details={"database": where, "revision": at, "expected": head},
    )


def upgrade(url: str, revision: str = "head", *, runtime_role: str | None = None) -> str | None:
    """Migrate the database at ``url`` up to ``revision``; returns the revision it is at afterwards.

    For SQLite this is the step that creates the database: its folder is created 0700 and the file 0600
    (an existing file, ``-wal`` and ``-shm`` are tightened to 0600). On PostgreSQL, ``runtime_role`` (the
    service's role, not the one in ``url``) is then given its rights by :func:`grant_runtime`.
    """
    path = sqlite_path(parse_url(url))
    if path is not None:
        private_dir(path.parent)
        create_private(path)
        tighten_sqlite_files(path)
    reached = _run(url, "upgrading the schema", lambda config: command.upgrade(config, revision))
    if runtime_role is not None:
        grant_runtime(url, runtime_role)
    return reached


_WRITABLE_TABLES = (*DATA_TABLES, llm_budget, console_sessions)
_STORE_TABLES = (*_WRITABLE_TABLES, audit_log, monitor_runs)


def grant_runtime(url: str, role: str) -> list[str]:
    """Give ``role`` (the service's) what it needs on a PostgreSQL store migrated through ``url`` (the
    owner's), and nothing more; returns the statements run. Idempotent: every ``store migrate`` re-applies
    it, so tables added by later revisions are covered.

    - ``audit_log``: SELECT, INSERT (appends are serialized by an advisory lock, which needs no rights);
    - ``monitor_runs``: SELECT, INSERT (the service's monitor task records its runs; history is kept);
    - ``decisions``, ``feedback``, ``shadow_decisions``: SELECT, INSERT, UPDATE, DELETE (a replaced verdict
      updates feedback; retention and erasure delete);
    - ``console_sessions``: SELECT, INSERT, DELETE (console sign-in and sign-out);
    - the version table: SELECT (every store checks the schema revision); the id sequences: USAGE, SELECT.

    :class:`StoreError` when ``role`` is the one migrating or owns a store table: then its credentials
    could disable the audit log's triggers and rewrite it, which is what the split is for.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise StoreError("separate migration and runtime roles are a PostgreSQL feature")
    engine = make_engine(url)
    try:
        with translated("granting the runtime role its rights", parsed), engine.begin() as conn:
            return _grant(conn, role)
    finally:
        engine.dispose()


def _grant(conn: Connection, role: str) -> list[str]:
    me = conn.execute(sa.text("SELECT current_user")).scalar_one()
    if role == me:
        raise StoreError(
            f"the runtime role {role!r} is the role migrating the store: point "
            "DESKPILOT_MIGRATION_DATABASE_URL at a separate owner role"
        )
    if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is None:
        raise StoreError(f"there is no PostgreSQL role {role!r} to grant the store's rights to")
    names = [table.name for table in _STORE_TABLES] + [VERSION_TABLE]
    owners = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relname = ANY(:names) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)"
        ),
        {"names": names},
    ).all()
    owned = sorted(name for name, owner in owners if owner == role)
    if owned:
        raise StoreError(
            f"the runtime role {role!r} owns {', '.join(owned)}, so it could disable the audit log's "
            f"triggers: as a superuser, run ALTER TABLE ... OWNER TO {me} for each, then migrate again",
            details={"owned": owned},
        )
    quoted = conn.dialect.identifier_preparer.quote
    grantee = quoted(role)
    data = ", ".join(quoted(table.name) for table in _WRITABLE_TABLES)
    statements = [
        f"REVOKE ALL ON {', '.join(quoted(name) for name in names)} FROM {grantee}",
        f"GRANT SELECT, INSERT ON {quoted(audit_log.name)} TO {grantee}",
        f"GRANT SELECT, INSERT ON {quoted(monitor_runs.name)} TO {grantee}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {data} TO {grantee}",
        f"GRANT SELECT ON {quoted(VERSION_TABLE)} TO {grantee}",
    ]
    for table in _STORE_TABLES:
        if "id" not in table.c:
            continue
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}
        ).scalar()
        if sequence:
            statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {grantee}")
    for statement in statements:
        conn.execute(sa.text(statement))
    return statements


def downgrade(url: str, revision: str) -> str | None:
    """Migrate down to ``revision`` (``"base"`` removes every table the store created)."""
    return _run(url, "downgrading the schema", lambda config: command.downgrade(config, revision))


def current(url: str) -> str | None:
    return _run(url, "reading the schema revision", lambda _config: None)


def _run(url: str, action: str, step: Callable[[Config], None]) -> str | None:
    engine = make_engine(url)
    parsed = parse_url(url)
    try:
        with translated(action, parsed):
            with engine.begin() as connection:
                try:
                    step(alembic_config(connection))
                except CommandError as error:
                    raise StoreError(f"{action} failed: {error}") from error
            with engine.connect() as connection:
                return revision_of(connection)
    finally:
        engine.dispose()
