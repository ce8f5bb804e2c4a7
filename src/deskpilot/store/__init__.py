"""The decision store: every triage decision, every correction and every shadow answer, scoped by tenant,
and the audit chain of operator actions.

``records`` holds the immutable records the store keeps, ``base`` the contract, ``sql`` the SQLAlchemy
implementation (SQLite or PostgreSQL) over the Core ``tables``, ``engine`` the engines per dialect and the one
place where database exceptions become DeskPilot errors, ``memory`` the fake for unit tests, ``writer`` the
buffers that keep a store outage from failing triage requests, and ``migrate`` the Alembic entry point that
creates and upgrades the schema. ``audit`` is the hash-chained audit log (its contract, verification and an
in-memory implementation); ``audit_sql`` keeps it in the store's database.
"""
