"""Migrate the store: its schema, and on PostgreSQL the split between the role that owns the tables and the
role the service runs with.

``DESKPILOT_MIGRATION_DATABASE_URL`` names the owner (used here only); ``DESKPILOT_DATABASE_URL`` the
runtime role, which gets INSERT and SELECT on the audit log and no more
(:func:`deskpilot.store.migrate.grant_runtime`).
Without a migration URL the store is migrated through ``DESKPILOT_DATABASE_URL`` as before, and that role
owns everything: fine for SQLite and for trying things out, not for a shared PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deskpilot.config import Settings
from deskpilot.errors import ConfigError


@dataclass(frozen=True)
class Migrated:
    revision: str | None
    database: str
    """The URL migrated through (password hidden)."""
    runtime_role: str | None
    """The role given the runtime rights, when a migration role was set."""
    loose_home: int | None
    """The home folder's mode when other users may enter it (it is left as it is)."""


def migrate_store(settings: Settings) -> Migrated:
    from deskpilot.store import migrate
    from deskpilot.store.engine import parse_url, safe_url
    from deskpilot.store.files import loose_mode, private_dir

    private_dir(settings.home)
    url, role = settings.resolved_database_url, None
    if settings.migration_database_url is not None:
        owner, runtime = parse_url(settings.migration_database_url), parse_url(url)
        if owner.get_backend_name() != "postgresql" or runtime.get_backend_name() != "postgresql":
            raise ConfigError(
                "DESKPILOT_MIGRATION_DATABASE_URL needs PostgreSQL in both it and the database URL"
            )
        if (owner.host, owner.port, owner.database) != (runtime.host, runtime.port, runtime.database):
            raise ConfigError(
                "DESKPILOT_MIGRATION_DATABASE_URL and DESKPILOT_DATABASE_URL must name the same database"
            )
        if not runtime.username:
            raise ConfigError("DESKPILOT_DATABASE_URL names no role to grant the runtime rights to")
        url, role = settings.migration_database_url, runtime.username
    revision = migrate.upgrade(url, runtime_role=role)
    return Migrated(revision, safe_url(parse_url(url)), role, loose_mode(Path(settings.home)))
