"""Create and upgrade the store's schema with Alembic, driven from code.

The migrations ship inside the package, so ``deskpilot store migrate`` needs no ``alembic.ini`` and works
from an installed wheel. :class:`SqlStore` never creates tables itself: it checks the revision recorded here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from deskpilot.errors import StoreError
from deskpilot.store.engine import make_engine, parse_url, translated
from deskpilot.store.tables import VERSION_TABLE

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


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` up to ``revision``; returns the revision it is at afterwards.

    For SQLite the file's directory is created, since this is the step that creates the database.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return _run(url, "upgrading the schema", lambda config: command.upgrade(config, revision))


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
