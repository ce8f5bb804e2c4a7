"""API keys: create and revoke them in the keys file the server re-reads, each change audited.

A revocation is a deferrable audit action: while the store is unreachable it goes ahead and its entry
waits in the local queue (so a leaked key can be revoked during a database outage). Creation fails closed:
a store that cannot be reached or refuses appends stops a ``create`` before the key exists, and a key whose
entry then still fails is revoked before anyone sees it, so no key works that the audit log does not show.
"""

from __future__ import annotations

from dataclasses import dataclass

from deskpilot.config import Settings
from deskpilot.errors import AuditWriteError, DeskPilotError, StoreUnavailableError, UsageError
from deskpilot.service.keys import (
    AGENT,
    OPERATOR,
    KeyRecord,
    config_key_records,
    create_key,
    list_keys,
    revoke_key,
    validate_role,
    validate_tenant,
)
from deskpilot.store.audit import AuditAction
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, open_audit


@dataclass(frozen=True)
class NewKey:
    """A created key, whose creation is in the audit log (``audit``)."""

    raw_key: str  # shown once, never stored
    record: KeyRecord
    audit: AuditReceipt | None
    audit_error: AuditWriteError | None = None
    """Always ``None``: a key whose entry fails is not handed over (kept for callers of the first API)."""


@dataclass(frozen=True)
class RevokedKey:
    """A revocation, which stands even when its audit entry failed (``audit_error``: the caller must fail
    after saying the key is revoked)."""

    record: KeyRecord
    audit: AuditReceipt | None
    audit_error: AuditWriteError | None = None


def create(
    settings: Settings,
    tenant: str,
    *,
    label: str | None = None,
    role: str = AGENT,
    reason: str = "created",
    audit: AuditRecorder | None = None,
) -> NewKey:
    """A new key for ``tenant``; only its hash is stored.

    Fails closed: :class:`StoreUnavailableError` (no key created) while the audit log cannot be reached,
    and :class:`AuditWriteError` when the entry fails after the key was written, which is then revoked
    before anyone saw it.
    """
    validate_tenant(tenant)
    validate_role(role)
    if role == OPERATOR and not settings.may_operate(tenant):
        raise UsageError(
            f"tenant {tenant!r} may not hold operator keys: DESKPILOT_CONSOLE_OPERATOR_TENANTS lists "
            f"{', '.join(settings.console_operator_tenants)}",
            details={"tenant": tenant, "role": role},
        )
    audit = audit or open_audit(settings)
    try:
        audit.ready(AuditAction.KEY_CREATE)
    except StoreUnavailableError as error:
        raise StoreUnavailableError(
            f"no key was created: its audit entry cannot be written now ({error.message})",
            details=error.details,
        ) from error
    raw_key, record = create_key(settings.keys_file, tenant, label=label, role=role)
    try:
        receipt = _audit(audit, AuditAction.KEY_CREATE, record, reason)
    except AuditWriteError as error:
        revoke_key(settings.keys_file, record.key_id)
        cause = error.__cause__
        why = cause.message if isinstance(cause, DeskPilotError) else error.message
        raise AuditWriteError(
            f"no key was created: its audit entry could not be written ({why}); "
            f"key {record.key_id} was revoked before anyone saw it",
            details={**error.details, "key_id": record.key_id},
        ) from error
    return NewKey(raw_key, record, receipt)


def revoke(
    settings: Settings,
    key_id: str,
    *,
    reason: str = "revoked",
    audit: AuditRecorder | None = None,
) -> RevokedKey:
    """Revoke a key of the keys file; a running server stops accepting it within about a second.

    The revocation is never held back by the audit: it happens first, and an entry that then cannot be
    written is returned as ``audit_error``.
    """
    configured = {r.key_id for r in config_key_records(settings.api_keys)}
    if key_id in configured:
        raise UsageError(f"key {key_id} comes from DESKPILOT_API_KEYS: remove it from the configuration")
    audit = audit or open_audit(settings)
    record = revoke_key(settings.keys_file, key_id)
    try:
        return RevokedKey(record, _audit(audit, AuditAction.KEY_REVOKE, record, reason))
    except AuditWriteError as error:
        return RevokedKey(record, None, error)


def listing(settings: Settings, *, tenant: str | None = None) -> list[KeyRecord]:
    """Keys from the configuration and the keys file, by id, tenant, label and status; never secrets."""
    records = config_key_records(settings.api_keys) + list_keys(settings.keys_file)
    return [r for r in records if tenant is None or r.tenant == tenant]


def _audit(audit: AuditRecorder, action: AuditAction, record: KeyRecord, reason: str) -> AuditReceipt:
    payload = {"key_id": record.key_id, "tenant": record.tenant, "label": record.label, "role": record.role}
    return audit.record(action, f"{record.tenant}/{record.key_id}", reason, payload)
