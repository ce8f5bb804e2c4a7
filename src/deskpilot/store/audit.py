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

What the hashes cannot detect on their own: the removal of the *last* entries (the rest is still a valid
chain), a chain rewritten wholesale from some entry on, or a forged entry appended with a correct hash (the
hashes are not secret). Two things kept outside the database close that gap; a log given an
:class:`AuditSeal` (:mod:`deskpilot.store.audit_seal`) uses both:

- **keys**: each new entry carries ``key_id`` and ``mac = HMAC-SHA256(key, context, key_id, hash)`` with a
  key the database never sees, so an entry appended or rewritten by someone who can only write the table
  fails verification. Entries written before keys existed carry neither and are reported as *unkeyed*;
  they may only form the start of the chain (an unkeyed entry after a keyed one is a forgery);
- **recorded heads**: every append is also written, ``seq``/``hash``/``key_id``, to a place the database
  role cannot rewrite (the head ledger), and verify checks each recorded head against the chain, so deleted
  last entries, a wiped log and a rewritten chain are found. An anchor passed by hand (``AuditAnchor``,
  e.g. the ``seq:hash`` that ``deskpilot audit verify`` prints, copied to a ticket or a second system)
  is checked the same way.

The database also refuses UPDATE, DELETE and TRUNCATE on the table (triggers, migration 0002), and the
service's own role gets INSERT and SELECT on it only (``deskpilot store migrate`` with a migration role),
so tampering takes the owner's DDL rights, not the service's credentials.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from typing import Any

from deskpilot.errors import StoreError
from deskpilot.store.audit_entry import (
    GENESIS_HASH,
    PROMOTIONS,
    AuditAction,
    AuditEntry,
    canonical_bytes,
    canonical_json,
    default_actor,
    entry_fields,
    format_time,
    new_entry,
)
from deskpilot.store.audit_verify import (
    MIN_ANCHOR_PREFIX,
    PROBLEM_ANCHOR,
    PROBLEM_CHAIN,
    PROBLEM_EDITED,
    PROBLEM_GAP,
    PROBLEM_KEY,
    PROBLEM_MAC,
    PROBLEM_ORDER,
    PROBLEM_TRUNCATED,
    PROBLEM_UNKEYED,
    AuditAnchor,
    AuditSeal,
    UnreadableRow,
    VerifyResult,
    check_chain,
)

__all__ = [
    "GENESIS_HASH",
    "MIN_ANCHOR_PREFIX",
    "PROBLEM_ANCHOR",
    "PROBLEM_CHAIN",
    "PROBLEM_EDITED",
    "PROBLEM_GAP",
    "PROBLEM_KEY",
    "PROBLEM_MAC",
    "PROBLEM_ORDER",
    "PROBLEM_TRUNCATED",
    "PROBLEM_UNKEYED",
    "PROMOTIONS",
    "AuditAction",
    "AuditAnchor",
    "AuditEntry",
    "AuditLog",
    "AuditSeal",
    "InMemoryAuditLog",
    "UnreadableRow",
    "VerifyResult",
    "canonical_bytes",
    "canonical_json",
    "check_chain",
    "default_actor",
    "format_time",
    "new_entry",
]


class AuditLog(ABC):
    """The append-only audit chain. Appends are serialized, so that concurrent writers (threads or
    processes) never fork it: every entry's ``seq`` is one more than its predecessor's and its
    ``prev_hash`` is that entry's hash. Failures surface as :class:`StoreError` (an unreachable database
    as :class:`StoreUnavailableError`); a bad argument (empty actor, non-JSON payload) as ``ValueError``.

    With a :attr:`seal`, appends are signed and their heads recorded, and :meth:`verify` checks both.
    Without one, appends are unkeyed: refused, once the chain holds keyed entries.
    """

    seal: AuditSeal | None = None

    def use_seal(self, seal: AuditSeal | None) -> None:
        """Sign this log's appends and check its entries with ``seal`` from now on."""
        self.seal = seal

    @property
    def location(self) -> str:
        """Which log this is, to tell its recorded heads from another log's (a database URL)."""
        return "memory"

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
        """Recompute the chain from the first entry, against ``anchor`` and the seal's recorded heads;
        see the module docstring for what is detectable."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the log is not used afterwards."""

    def _sealed(self, entry: AuditEntry, last_keyed: bool) -> AuditEntry:
        """``entry`` signed, or refused when it cannot be and the chain already holds keyed entries."""
        if self.seal is not None:
            return self.seal.seal(entry)
        if last_keyed:
            raise StoreError(
                "the audit log holds keyed entries and this writer has no audit key: "
                "an unkeyed entry would read as forged"
            )
        return entry

    def _witness(self, entry: AuditEntry) -> None:
        if self.seal is not None:
            self.seal.witness(entry, self.location)

    def _recorded(self) -> list[AuditAnchor]:
        return [] if self.seal is None else self.seal.anchors(self.location)


class InMemoryAuditLog(AuditLog):
    """The fake for unit tests. ``rows`` is the storage itself, in storage order: tests edit it to
    simulate tampering, and verify walks it as stored (as the SQL log walks its rows by ``seq``)."""

    def __init__(self, *, seal: AuditSeal | None = None) -> None:
        self._lock = threading.Lock()
        self.rows: list[AuditEntry] = []
        self.seal = seal

    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any] | None = None
    ) -> AuditEntry:
        with self._lock:
            last = max(self.rows, key=lambda entry: entry.seq, default=None)
            prev_seq, prev_hash = (0, GENESIS_HASH) if last is None else (last.seq, last.hash)
            entry = new_entry(
                prev_seq, prev_hash, actor=actor, action=action, target=target, reason=reason, payload=payload
            )
            entry = self._sealed(entry, last is not None and last.keyed)
            self.rows.append(entry)
        self._witness(entry)
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
        return check_chain(rows, anchor, seal=self.seal, recorded=self._recorded())

    def close(self) -> None:
        """Nothing to release; the entries stay readable for assertions."""


def _copy(entry: AuditEntry) -> AuditEntry:
    """A copy whose payload the caller may change without changing the stored entry."""
    return AuditEntry(**{**entry_fields(entry), "payload": copy.deepcopy(entry.payload)})
