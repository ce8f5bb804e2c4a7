"""Alembic environment for the store, run by :mod:`deskpilot.store.migrate` on a connection it opened.

There is no ``alembic.ini`` and no logging setup here: the caller owns both.
"""

from __future__ import annotations

from alembic import context

from deskpilot.store.tables import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations through deskpilot.store.migrate (it passes a connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
