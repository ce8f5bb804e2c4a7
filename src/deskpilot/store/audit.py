"""The audit chain: an append-only, hash-chained log of every promotion, rollback, gate decision, forced
action and key change.

Each entry's hash is SHA-256 over a canonical serialization of its own fields *and* the previous entry's
hash, so an entry cannot be edited, removed or moved without breaking the chain from that point on::

    hash = sha256(utf8(json.dumps({"seq", "at", "actor", "action", "target", "reason", "payload",
                                   "prev_hash"}, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, allow_nan=False))).hexdigest()

with ``at`` written as UTC ISO-8601 with microseconds and a ``Z`` (``2026-03-01T12:00:00.123456Z``) and the
first entry's ``prev_hash`` 64 zeros (:data:`GENESIS_HASH`).

What :meth:`AuditLog.verify` detects, reporting the first broken ``seq``:

- an edited field of any entry (actor, time, reason, payload, ...): its hash no longer matches;
- an edited entry whose hash was recomputed too: the *next* entry's ``prev_hash`` no longer matches;
- a deleted entry: a gap in ``seq`` (or, if later entries were renumbered and rehashed, a broken
  ``prev_hash``); entries moved to another position: their hash (``seq`` is hashed) or the chain breaks.

What it cannot detect on its own: the removal of the *last* entries (the rest is still a valid chain), or a
chain rewritten wholesale from some entry on by someone who can write the table (the hashes are not
secret). Both need an anchor kept outside the database: pass a head recorded earlier (``AuditAnchor``,
e.g. the ``seq:hash`` that ``deskpilot audit verify`` prints, copied to a ticket or a second system) and
verify reports the entries missing after it or the entry that no longer matches it. The database also
refuses UPDATE, DELETE and TRUNCATE on the table (triggers, migration 0002), so tampering takes deliberate
DDL rights, not a stray statement.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import json
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from deskpilot.store.records import utc_now

GENESIS_HASH = "0" * 64
MIN_ANCHOR_PREFIX = 12


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


PROMOTIONS = frozenset({AuditAction.PROMOTE, AuditAction.FORCE_PROMOTE})

PROBLEM_EDITED = "hash mismatch (row edited)"
PROBLEM_CHAIN = "prev_hash does not match previous entry (chain broken / row deleted or reordered)"
PROBLEM_GAP = "sequence gap (row deleted)"
PROBLEM_ORDER = "sequence out of order (rows reordered or duplicated)"
PROBLEM_TRUNCATED = "entries missing after the anchor (last rows deleted)"
PROBLEM_ANCHOR = "entry does not match the anchor (chain rewritten)"


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
    return AuditEntry(**{**_fields(draft), "hash": draft.computed_hash()})


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in AuditEntry.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class AuditAnchor:
    """A head recorded outside the database: the log must still hold entry ``seq`` with this hash (a hex
    prefix of at least 12 digits, as ``deskpilot audit verify`` prints it, is accepted)."""

    seq: int
    hash: str

    def __post_init__(self) -> None:
        if self.seq < 1 or not re.fullmatch(rf"[0-9a-f]{{{MIN_ANCHOR_PREFIX},64}}", self.hash):
            raise ValueError(f"an anchor is SEQ:HASH with seq >= 1 and {MIN_ANCHOR_PREFIX}-64 hex digits")

    @classmethod
    def parse(cls, text: str) -> AuditAnchor:
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit():
            raise ValueError(f"anchor {text!r}: expected SEQ:HASH")
        return cls(int(seq), digest.lower())


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A stored row that no longer parses as an entry (a tampered type or malformed JSON); ``seq`` is
    ``None`` when even that is not an integer any more."""

    seq: int | None
    why: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    """Entries found intact before the first broken one (all of them when ``ok``)."""
    first_broken_seq: int | None
    problem: str
    """Empty when ``ok``; otherwise one of the ``PROBLEM_*`` strings."""
    detail: str = ""
    head: AuditEntry | None = None
    """The last intact entry."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem or None,
            "detail": self.detail or None,
            "head": None if self.head is None else {"seq": self.head.seq, "hash": self.head.hash},
        }


def check_chain(
    rows: Iterable[AuditEntry | UnreadableRow], anchor: AuditAnchor | None = None
) -> VerifyResult:
    """Walk entries in the order stored (by ``seq``) and report the first that breaks the chain."""
    previous: AuditEntry | None = None
    checked = 0
    for row in rows:
        problem = _problem(row, previous, anchor)
        if problem is not None:
            return VerifyResult(False, checked, *problem, head=previous)
        assert isinstance(row, AuditEntry)  # an unreadable row is always a problem
        previous, checked = row, checked + 1
    last_seq = 0 if previous is None else previous.seq
    if anchor is not None and last_seq < anchor.seq:
        detail = f"the log ends at {last_seq}, the anchor names entry {anchor.seq}"
        return VerifyResult(False, checked, last_seq + 1, PROBLEM_TRUNCATED, detail, previous)
    return VerifyResult(True, checked, None, "", "", previous)


def _problem(
    row: AuditEntry | UnreadableRow, previous: AuditEntry | None, anchor: AuditAnchor | None
) -> tuple[int, str, str] | None:
    """(first broken seq, problem, detail) when ``row`` cannot follow ``previous``."""
    expected_seq = 1 if previous is None else previous.seq + 1
    if isinstance(row, UnreadableRow):
        seq = expected_seq if row.seq is None else row.seq
        return seq, PROBLEM_EDITED, f"entry {seq} is unreadable: {row.why}"
    if row.seq > expected_seq:
        missing = f"{expected_seq}" if row.seq == expected_seq + 1 else f"{expected_seq}..{row.seq - 1}"
        return expected_seq, PROBLEM_GAP, f"entry {missing} missing; the next stored is {row.seq}"
    if row.seq < expected_seq:
        return row.seq, PROBLEM_ORDER, f"entry {row.seq} found where {expected_seq} belongs"
    try:
        recomputed = row.computed_hash()
    except ValueError as error:
        recomputed = f"(none: {error})"
    expected_prev = GENESIS_HASH if previous is None else previous.hash
    found: tuple[int, str, str] | None = None
    if recomputed != row.hash:
        found = row.seq, PROBLEM_EDITED, f"entry {row.seq} stores {row.hash[:12]}, content gives {recomputed}"
    elif row.prev_hash != expected_prev:
        detail = f"entry {row.seq} links to {row.prev_hash[:12]}, the entry before it is {expected_prev[:12]}"
        found = row.seq, PROBLEM_CHAIN, detail
    elif anchor is not None and row.seq == anchor.seq and not row.hash.startswith(anchor.hash):
        found = row.seq, PROBLEM_ANCHOR, f"entry {row.seq} is {row.hash[:12]}, the anchor says {anchor.hash}"
    return found


class AuditLog(ABC):
    """The append-only audit chain. Appends are serialized, so that concurrent writers (threads or
    processes) never fork it: every entry's ``seq`` is one more than its predecessor's and its
    ``prev_hash`` is that entry's hash. Failures surface as :class:`StoreError` (an unreachable database
    as :class:`StoreUnavailableError`); a bad argument (empty actor, non-JSON payload) as ``ValueError``.
    """

    @abstractmethod
    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any] | None = None
    ) -> AuditEntry: ...

    @abstractmethod
    def entries(self, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Entries with ``seq > since_seq``, oldest first, at most ``limit`` of them."""

    @abstractmethod
    def head(self) -> AuditEntry | None:
        """The newest entry, or ``None`` for an empty log."""

    @abstractmethod
    def verify(self, anchor: AuditAnchor | None = None) -> VerifyResult:
        """Recompute the chain from the first entry; see the module docstring for what is detectable."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the log is not used afterwards."""


class InMemoryAuditLog(AuditLog):
    """The fake for unit tests. ``rows`` is the storage itself, in storage order: tests edit it to
    simulate tampering, and verify walks it as stored (as the SQL log walks its rows by ``seq``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list[AuditEntry] = []

    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any] | None = None
    ) -> AuditEntry:
        with self._lock:
            last = max(self.rows, key=lambda entry: entry.seq, default=None)
            prev_seq, prev_hash = (0, GENESIS_HASH) if last is None else (last.seq, last.hash)
            entry = new_entry(
                prev_seq, prev_hash, actor=actor, action=action, target=target, reason=reason, payload=payload
            )
            self.rows.append(entry)
        return _copy(entry)

    def entries(self, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        with self._lock:
            found = sorted((e for e in self.rows if e.seq > since_seq), key=lambda e: e.seq)
        return [_copy(entry) for entry in found[:limit]]

    def head(self) -> AuditEntry | None:
        with self._lock:
            last = max(self.rows, key=lambda entry: entry.seq, default=None)
        return None if last is None else _copy(last)

    def verify(self, anchor: AuditAnchor | None = None) -> VerifyResult:
        with self._lock:
            rows = list(self.rows)
        return check_chain(rows, anchor)

    def close(self) -> None:
        """Nothing to release; the entries stay readable for assertions."""


def _copy(entry: AuditEntry) -> AuditEntry:
    """A copy whose payload the caller may change without changing the stored entry."""
    return AuditEntry(**{**_fields(entry), "payload": copy.deepcopy(entry.payload)})
