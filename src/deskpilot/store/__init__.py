"""The decision log and feedback store: every triage decision and every correction, scoped by tenant.

``base`` is the contract, ``sql`` the SQLAlchemy implementation (SQLite or PostgreSQL), ``memory`` the fake
for unit tests, ``writer`` the buffer that keeps a store outage from failing triage requests, and
``migrate`` the Alembic entry point that creates and upgrades the schema.
"""
