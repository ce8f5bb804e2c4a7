"""One audit entry: its fields, the canonical bytes its hash covers, and the actions it records.

See :mod:`deskpilot.store.audit` for the chain these entries form and what verifying it detects.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from deskpilot.store.records import utc_now

GENESIS_HASH = "0" * 64


class AuditAction(StrEnum):
    """Every action the audit chain records; the stored text of an entry's ``action``."""

    GATE = "gate"  # a gate decision on a version (pass or fail)
    PROMOTE = "promote"  # to shadow, canary or champion, gate passed
    FORCE_PROMOTE = "force_promote"  # the same without a passing gate, with the operator's reason
    RAMP = "ramp"  # the automatic canary ramp
    ROLLBACK = "rollback"  # by an operator
    AUTO_ROLLBACK = "auto_rollback"  # by the service's rollout guard
    KEY_CREATE = "key_create"
    KEY_REVOKE = "key_revoke"
    AUDIT_KEY_ROTATE = "audit_key_rotate"  # a new audit key signs from this entry on
    STORE_PURGE = "store_purge"  # decisions, feedback and shadow answers older than a date deleted
    STORE_ERASE = "store_erase"  # one ticket's records deleted (the entry keeps a keyed hash, no id)
    RETRAIN = "retrain"  # a version retrained from feedback: parent snapshot, feedback range, guard counts


PROMOTIONS = frozenset({AuditAction.PROMOTE, AuditAction.FORCE_PROMOTE})


def default_actor() -> str:
    """Who runs a CLI action: the OS user (``getpass`` reads LOGNAME/USER first, then the password db)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container uid with no passwd entry and no USER
        return f"uid:{os.getuid()}"


def format_time(at: datetime) -> str:
    """The one textual form of a time in the hash: UTC, microseconds, ``Z``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text as is; ``ValueError`` for what JSON cannot say exactly."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"audit payload is not canonical JSON: {error}") from None


def canonical_bytes(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    reason: str,
    payload: dict[str, Any],
    prev_hash: str,
) -> bytes:
    document = {
        "seq": seq,
        "at": format_time(at),
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    try:
        return canonical_json(document).encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate
        raise ValueError(f"audit entry is not valid UTF-8 text: {error.reason}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    payload: dict[str, Any] = field(hash=False)
    prev_hash: str
    hash: str
    key_id: str | None = None
    """Which audit key signed the entry; ``None`` for an unkeyed entry (written before keys existed)."""
    mac: str | None = None
    """HMAC-SHA256 of the entry's hash under that key (:mod:`deskpilot.store.audit_seal`)."""

    @property
    def keyed(self) -> bool:
        return self.mac is not None

    def computed_hash(self) -> str:
        """The hash this entry's content and ``prev_hash`` call for (equal to ``hash`` unless tampered)."""
        content = canonical_bytes(
            seq=self.seq,
            at=self.at,
            actor=self.actor,
            action=self.action,
            target=self.target,
            reason=self.reason,
            payload=self.payload,
            prev_hash=self.prev_hash,
        )
        return hashlib.sha256(content).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "key_id": self.key_id,
            "mac": self.mac,
        }


def new_entry(
    prev_seq: int,
    prev_hash: str,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str,
    payload: dict[str, Any] | None,
    at: datetime | None = None,
) -> AuditEntry:
    """The entry after entry ``prev_seq`` (0 and :data:`GENESIS_HASH` before the first). The payload is
    normalized through canonical JSON, so that what is returned is exactly what a read from the database
    gives back (tuples become lists, and so on)."""
    for name, value in (("actor", actor), ("action", action)):
        if not value.strip():
            raise ValueError(f"an audit entry needs a non-empty {name}")
    if any("\x00" in value for value in (actor, action, target, reason)):
        raise ValueError("audit text may not contain NUL characters")
    if payload is not None and not isinstance(payload, dict):
        raise ValueError("an audit payload is a JSON object (a dict)")
    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise ValueError("audit times must be timezone-aware")
    normalized: dict[str, Any] = json.loads(canonical_json(payload or {}))
    draft = AuditEntry(
        seq=prev_seq + 1,
        at=(at or utc_now()).astimezone(UTC),
        actor=actor,
        action=action,
        target=target,
        reason=reason,
        payload=normalized,
        prev_hash=prev_hash,
        hash="",
    )
    return AuditEntry(**{**entry_fields(draft), "hash": draft.computed_hash()})


def entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in AuditEntry.__dataclass_fields__}
