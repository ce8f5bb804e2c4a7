"""The one audit policy: the use case appends its own entry, and an entry that cannot be written fails the
action, except for the few actions that must never wait for the store (ADR 0010).

* :meth:`AuditRecorder.ready` is called *before* an action changes anything: a store that refuses appends
  (schema behind, database of newer code, unreachable) stops the action there, with nothing changed.
* :meth:`AuditRecorder.record` appends after the change. Should the append still fail (the store went away
  in between), the action fails with :class:`AuditWriteError`, whose message says the change itself was made.
* :data:`DEFERRABLE` actions (a key's revocation and the service's automatic rollback) go ahead while the
  store is *unreachable*: their entry is queued in a local file and appended, in order and marked as
  deferred, by the next append that reaches the store. A store that answers but refuses (schema behind)
  fails them too: that needs the operator, not time. Creating a key is not deferrable: a key nobody can
  see the creation of in the audit log must not exist, so creation fails closed.

Every log these functions open is sealed (:mod:`deskpilot.store.audit_seal`): appends are signed with the
audit key (``DESKPILOT_AUDIT_KEY``, else the key file, created on the first append) and recorded in the head
ledger, and verification checks both.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskpilot.config import Settings
from deskpilot.errors import AuditWriteError, DeskPilotError, StoreUnavailableError, UsageError
from deskpilot.store.audit import AuditAction, AuditAnchor, AuditEntry, AuditLog, VerifyResult, default_actor
from deskpilot.store.audit_seal import ChainSeal, HeadLedger, load_keys, rotate_key_file
from deskpilot.store.files import open_private_append, private_dir
from deskpilot.workflows.build import existing_store_url, writable_store_url

if TYPE_CHECKING:
    from deskpilot.store.audit_sql import SqlAuditLog

logger = logging.getLogger(__name__)

DEFERRABLE = frozenset({AuditAction.KEY_REVOKE, AuditAction.AUTO_ROLLBACK})
PENDING_FILE = "audit-pending.jsonl"


@dataclass(frozen=True)
class AuditReceipt:
    """What became of one entry: appended as ``seq``, or queued until the store returns."""

    action: str
    target: str
    seq: int | None
    queued: bool = False

    def describe(self) -> str:
        if self.queued:
            return f"audit entry queued until the store is reachable ({self.action} {self.target})"
        return f"audited as entry {self.seq} ({self.action} {self.target})"


class PendingEntries:
    """Entries of deferrable actions waiting for the store, one JSON object a line; safe across processes
    (an exclusive ``flock`` around every read and write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        with os.fdopen(open_private_append(self.path), "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add(self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any]) -> None:
        line = {"actor": actor, "action": action, "target": target, "reason": reason, "payload": payload}
        line["queued_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._locked() as handle:
            handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            return sum(1 for line in handle if line.strip())

    def peek(self) -> int:
        """:meth:`count` without the lock, for the service's gauge: it must not wait while another process
        drains the file into a slow store (a line still being written is not counted)."""
        try:
            with self.path.open(encoding="utf-8") as handle:
                return sum(1 for line in handle if line.endswith("\n") and line.strip())
        except FileNotFoundError:
            return 0

    def drain(self, log: AuditLog) -> int:
        """Append every queued entry to ``log``, oldest first; the file keeps what was not written."""
        if not self.path.exists():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            waiting = [json.loads(line) for line in handle if line.strip()]
            written = 0
            try:
                for item in waiting:
                    payload = {**item["payload"], "deferred": True, "queued_at": item["queued_at"]}
                    log.append(item["actor"], item["action"], item["target"], item["reason"], payload)
                    written += 1
            finally:
                handle.seek(0)
                handle.truncate()
                for item in waiting[written:]:
                    handle.write(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n")
                handle.flush()
        if written:
            logger.info("wrote %d deferred audit entries", written)
        return written


class AuditRecorder:
    """The audit chain as the use cases write it; also the ``AuditTrail`` that rollout actions append to."""

    def __init__(
        self,
        log: AuditLog | Callable[[], AuditLog],
        *,
        pending: PendingEntries | None = None,
        actor: str | None = None,
        on_queued: Callable[[AuditReceipt, str], None] | None = None,
        on_unwritten: Callable[[str], None] | None = None,
    ) -> None:
        """``log`` is either a log the caller keeps open and closes (a server's), or a function that opens
        one for each use, closed right after (a command's). ``on_queued`` hears of each entry queued, with
        why (a server logs it; a command shows the receipt). ``on_unwritten`` hears the action of each entry
        lost, done unaudited (a server counts them without this layer knowing its metrics)."""
        self._log = log
        self.pending = pending
        self.actor = actor or default_actor()
        self._on_queued = on_queued
        self._on_unwritten = on_unwritten
        self.receipts: list[AuditReceipt] = []

    @contextlib.contextmanager
    def _session(self) -> Iterator[AuditLog]:
        if isinstance(self._log, AuditLog):
            yield self._log
            return
        log = self._log()
        try:
            yield log
        finally:
            log.close()

    def ready(self, action: AuditAction) -> None:
        """Raise unless an entry for ``action`` can be kept: call it before the action changes anything
        (the audit key is loaded, or created, here too)."""
        try:
            with self._session() as log:
                log.head()
                if log.seal is not None and action not in DEFERRABLE:
                    log.seal.prepare()
                if self.pending is not None:
                    self.pending.drain(log)
        except StoreUnavailableError:
            if action in DEFERRABLE and self.pending is not None:
                return
            raise

    def record(
        self,
        action: AuditAction,
        target: str,
        reason: str,
        payload: dict[str, Any],
        *,
        actor: str | None = None,
    ) -> AuditReceipt:
        """Append the entry of an action that happened; queue it (deferrable actions, store unreachable) or
        raise :class:`AuditWriteError`."""
        who = actor or self.actor
        try:
            with self._session() as log:
                if self.pending is not None:
                    self.pending.drain(log)
                entry: AuditEntry = log.append(who, str(action), target, reason, payload)
        except StoreUnavailableError as error:
            if action in DEFERRABLE and self.pending is not None:
                self.pending.add(who, str(action), target, reason, payload)
                receipt = self._keep(AuditReceipt(str(action), target, None, queued=True))
                if self._on_queued is not None:
                    self._on_queued(receipt, error.message)
                return receipt
            raise self._unwritten(action, target, error) from error
        except DeskPilotError as error:  # the store refused, or the audit key is unusable
            raise self._unwritten(action, target, error) from error
        return self._keep(AuditReceipt(str(action), target, entry.seq))

    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any]
    ) -> AuditReceipt:
        """The ``AuditTrail`` protocol of :mod:`deskpilot.rollout.actions`."""
        return self.record(AuditAction(action), target, reason, payload, actor=actor)

    def _keep(self, receipt: AuditReceipt) -> AuditReceipt:
        self.receipts.append(receipt)
        return receipt

    def _unwritten(self, action: AuditAction, target: str, error: DeskPilotError) -> AuditWriteError:
        """The error for an entry lost, once ``on_unwritten`` has heard of it."""
        if self._on_unwritten is not None:
            self._on_unwritten(str(action))
        return AuditWriteError(
            f"the audit entry could not be written: {error.message} ({action} {target} was done all the "
            "same)",
            details={"action": str(action), "target": target, "cause": error.code},
        )


def audit_seal(settings: Settings, *, create_key: bool) -> ChainSeal:
    """The seal of this home: the configured audit keys or the key file (created on first use when
    ``create_key``), and the head ledger."""
    key_file = settings.resolved_audit_key_file
    return ChainSeal(
        lambda: load_keys(settings.audit_key, key_file, create=create_key),
        HeadLedger(settings.resolved_audit_ledger),
        key_file=key_file,
    )


def open_audit(settings: Settings, *, actor: str | None = None) -> AuditRecorder:
    """The recorder for the store the settings point at (a SQLite store is created or upgraded on first
    use), sealed with this home's audit key and ledger, queueing deferrable entries under the home."""
    from deskpilot.store.audit_sql import SqlAuditLog

    private_dir(settings.home)
    seal = audit_seal(settings, create_key=True)

    @functools.cache
    def url() -> str:  # migrate a SQLite store once per recorder, not once per append
        return writable_store_url(settings)

    return AuditRecorder(
        lambda: SqlAuditLog(url(), seal=seal),
        pending=PendingEntries(settings.home / PENDING_FILE),
        actor=actor,
    )


def open_audit_for_reading(settings: Settings) -> SqlAuditLog:
    """The log in the store, checked against this home's keys and ledger; a missing SQLite file is an
    error, not an empty (and so 'intact') log."""
    from deskpilot.store.audit_sql import SqlAuditLog

    url = existing_store_url(settings, "nothing was audited here yet")
    return SqlAuditLog(url, seal=audit_seal(settings, create_key=False))


@dataclass(frozen=True)
class ChainCheck:
    """What ``audit verify`` reports: the chain's verdict, what it was checked against, and the entries
    still waiting to be appended."""

    database: str
    result: VerifyResult
    queued: int
    ledger: Path
    keys: str
    """Where the audit keys came from (never a key)."""


def verify_chain(settings: Settings, anchor: AuditAnchor | None = None) -> ChainCheck:
    """Recompute the hash chain in the store, check every MAC with this home's audit keys, and check the
    heads recorded in the ledger (and ``anchor`` when given)."""
    log = open_audit_for_reading(settings)
    try:
        result = log.verify(anchor)
        assert isinstance(log.seal, ChainSeal)
        keys = log.seal.keys.origin
    finally:
        log.close()
    return ChainCheck(log.url, result, queued_entries(settings), settings.resolved_audit_ledger, keys)


@dataclass(frozen=True)
class KeyRotation:
    previous_key_id: str | None
    key_id: str
    audit: AuditReceipt | None
    audit_error: AuditWriteError | None = None


def rotate_key(settings: Settings, *, reason: str, audit: AuditRecorder | None = None) -> KeyRotation:
    """Add a new key to the key file: it signs from now on, the old ones still verify. The rotation is
    the first entry the new key signs, naming both key ids."""
    if settings.audit_key:
        raise UsageError(
            "the audit keys come from DESKPILOT_AUDIT_KEY: rotate by putting a new key first in it"
        )
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.AUDIT_KEY_ROTATE)
    previous, new = rotate_key_file(settings.resolved_audit_key_file)
    payload = {"previous_key_id": previous, "key_id": new}
    try:
        receipt = audit.record(AuditAction.AUDIT_KEY_ROTATE, f"audit-key/{new}", reason, payload)
    except AuditWriteError as error:
        return KeyRotation(previous, new, None, error)
    return KeyRotation(previous, new, receipt)


def keyed_digest(settings: Settings, purpose: str, text: str) -> tuple[str, str]:
    """(key id, HMAC) of ``text`` under this home's signing key: what an audit entry keeps of a value it
    must not keep (an erased ticket's id)."""
    return audit_seal(settings, create_key=True).keys.digest(purpose, text)


def read_entries(settings: Settings, *, limit: int, since: int | None = None) -> list[AuditEntry]:
    """Entries after ``since`` (default: the newest ``limit``), oldest first."""
    log = open_audit_for_reading(settings)
    try:
        if since is None:
            head = log.head()
            since = 0 if head is None else max(0, head.seq - limit)
        return log.entries(since_seq=since, limit=limit)
    finally:
        log.close()


def queued_entries(settings: Settings) -> int:
    """Entries of deferrable actions queued in this home while the store was unreachable."""
    return PendingEntries(settings.home / PENDING_FILE).count()
