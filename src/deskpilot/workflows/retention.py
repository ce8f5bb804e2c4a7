"""Retention and erasure: delete what the store need not keep, and audit each deletion without keeping what
was deleted.

* :func:`purge` deletes, across tenants, the decisions made before a date with all their feedback, and the
  shadow answers given before it (``deskpilot store purge --before DATE``). :class:`RetentionTask` does the
  same in a server process every ``retention_interval_s`` for ``retention_days`` (off by default).
* :func:`erase` deletes one ticket's decisions, their feedback and the shadow answers to the same requests
  (``deskpilot store erase --ticket-id ID``): a data subject's erasure request.

Both are audited (``store_purge``, ``store_erase``) and fail closed like every audited action: a store that
cannot keep the entry stops them before anything is deleted. An erasure's entry keeps counts and a keyed
hash of the ticket id (HMAC under the audit key), never the id: the log can show that a ticket was erased,
and someone holding the key can check which, but the log does not hold the personal data it documents the
deletion of. The audit log itself is never purged or erased.

Deleted rows are overwritten in a SQLite file (``secure_delete``) and its write-ahead log is checkpointed;
PostgreSQL frees them at its next VACUUM (autovacuum), and backups keep them until they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from deskpilot.config import Settings
from deskpilot.data.pii import PiiRedactor
from deskpilot.errors import AuditWriteError, DeskPilotError, UsageError
from deskpilot.store.audit import AuditAction
from deskpilot.store.base import DecisionStore, DeletedRows
from deskpilot.store.records import utc_now
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, keyed_digest, open_audit
from deskpilot.workflows.build import writable_store_url

logger = logging.getLogger(__name__)

TICKET_DIGEST = "ticket_id"
"""The purpose an erased ticket id's keyed hash is computed for (part of the HMAC's input)."""


@dataclass(frozen=True)
class Purged:
    before: datetime
    deleted: DeletedRows
    audit: AuditReceipt | None
    audit_error: AuditWriteError | None = None
    """The rows are deleted all the same: the caller reports them, then fails."""

    def to_dict(self) -> dict[str, object]:
        return {"before": self.before.isoformat(), "deleted": self.deleted.to_dict()}


@dataclass(frozen=True)
class Erased:
    deleted: DeletedRows
    ticket_digest: str
    """HMAC-SHA256 of the ticket id under the audit key ``key_id``: what the audit entry keeps."""
    key_id: str
    tenant: str | None
    unmatched_form: str | None
    """The stored form of the id when the service redacts it into something other tickets share (an
    e-mail ticket id is stored as ``<EMAIL>``): decisions stored under it were not erased."""
    audit: AuditReceipt | None
    audit_error: AuditWriteError | None = None
    reindex_error: str | None = None
    """Set when the rows were erased but the retrieval index could not be rebuilt without them: rerun
    ``deskpilot kb build --full`` (older versions are deleted only after a successful rebuild)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "deleted": self.deleted.to_dict(),
            "ticket_digest": self.ticket_digest,
            "key_id": self.key_id,
            "tenant": self.tenant,
            "unmatched_form": self.unmatched_form,
        }


def purge(
    settings: Settings,
    before: datetime,
    *,
    reason: str = "purged from the CLI",
    audit: AuditRecorder | None = None,
    store: DecisionStore | None = None,
) -> Purged:
    """Delete decisions (with their feedback) and shadow answers older than ``before`` (aware)."""
    if before.tzinfo is None or before.utcoffset() is None:
        raise UsageError("a purge date must carry its time zone (UTC is assumed by the CLI)")
    if before > utc_now():
        raise UsageError(f"{before.isoformat()} is in the future: a purge deletes what is older than a date")
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.STORE_PURGE)
    with _store(settings, store) as opened:
        deleted = opened.purge(before)
    payload: dict[str, object] = {"before": before.isoformat(), **deleted.to_dict()}
    try:
        receipt = audit.record(AuditAction.STORE_PURGE, "store", _redacted(reason), payload)
    except AuditWriteError as error:
        return Purged(before, deleted, None, error)
    return Purged(before, deleted, receipt)


def stored_ticket_forms(ticket_id: str) -> tuple[list[str], str | None]:
    """The forms a caller's ticket id may be stored in, and the one left out.

    The service stores ticket ids redacted like texts (``TriageService._record``), with the default
    :class:`PiiRedactor`; decisions logged before that keep the id as given. An id the redactor leaves alone
    is stored as is; one it changes (it holds an e-mail address, a phone number...) is stored as its
    redaction, which other tickets share, so matching it would erase other tickets too: it is left out.
    """
    if not ticket_id.strip():
        raise UsageError("a ticket id to erase cannot be empty")
    redacted = PiiRedactor().redact(ticket_id)
    return [ticket_id], (None if redacted == ticket_id else redacted)


def erase(
    settings: Settings,
    ticket_id: str,
    *,
    tenant: str | None = None,
    reason: str = "erasure request",
    audit: AuditRecorder | None = None,
    store: DecisionStore | None = None,
) -> Erased:
    """Delete every decision of ``ticket_id`` (in ``tenant``, or in every tenant), with its feedback, shadow
    answers and reply suggestions, and the resolved ticket of that id in the knowledge base (the retrieval
    index is rebuilt without it and its older versions deleted); audit it with a keyed hash of the id and the
    counts."""
    forms, unmatched = stored_ticket_forms(ticket_id)
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.STORE_ERASE)
    key_id, digest = keyed_digest(settings, TICKET_DIGEST, ticket_id)
    from deskpilot.workflows.knowledge import knowledge_id, reindex_after_erasure

    with _store(settings, store) as opened:  # a knowledge item whose id was personal data: its keyed form
        deleted = opened.erase_ticket([*forms, knowledge_id(settings, ticket_id)], tenant=tenant)
    reindex_error = None
    if deleted.knowledge:  # erased resolved tickets must leave the retrieval index, every version of it
        try:
            reindex_after_erasure(settings)
        except (DeskPilotError, OSError) as error:  # the rows are gone: audit that, then report this
            reindex_error = f"the retrieval index still holds the erased ticket: {error}"
    payload: dict[str, object] = {
        "ticket_id_hmac": digest,
        "key_id": key_id,
        "tenant": tenant,
        **deleted.to_dict(),
    }
    try:
        receipt = audit.record(AuditAction.STORE_ERASE, f"ticket/{digest[:16]}", _redacted(reason), payload)
    except AuditWriteError as error:
        return Erased(deleted, digest, key_id, tenant, unmatched, None, error, reindex_error)
    return Erased(deleted, digest, key_id, tenant, unmatched, receipt, reindex_error=reindex_error)


def _redacted(reason: str) -> str:
    """An operator's reason may quote the data subject ("request from jane@example.com")."""
    return PiiRedactor().redact(reason)


@contextlib.contextmanager
def _store(settings: Settings, given: DecisionStore | None) -> Iterator[DecisionStore]:
    if given is not None:
        yield given
        return
    from deskpilot.store.sql import SqlStore

    opened = SqlStore(writable_store_url(settings))
    try:
        yield opened
    finally:
        opened.close()


class RetentionTask:
    """Applies a retention period in a server process: every ``interval_s`` it deletes what is older than
    ``days`` and, when it deleted anything, appends a ``store_purge`` entry. Every process of a server runs
    one; they race harmlessly (the second finds nothing left). A failed run is logged and tried again at
    the next interval."""

    def __init__(
        self,
        store: DecisionStore,
        audit: AuditRecorder,
        *,
        days: int,
        interval_s: float,
        first_delay_s: float = 10.0,
    ) -> None:
        if days < 1 or interval_s <= 0:
            raise ValueError("retention needs days >= 1 and interval_s > 0")
        self.store = store
        self.audit = audit
        self.days = days
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    def run_once(self) -> DeletedRows | None:
        """One purge; ``None`` when it could not run (the reason is logged)."""
        before = utc_now() - timedelta(days=self.days)
        self.runs += 1
        try:
            self.audit.ready(AuditAction.STORE_PURGE)
            deleted = self.store.purge(before)
        except Exception as error:  # a store outage or a bug must not end the task
            logger.warning("retention (%d days) did not run: %s", self.days, error)
            return None
        if deleted.total:
            payload: dict[str, object] = {
                "before": before.isoformat(),
                "retention_days": self.days,
                **deleted.to_dict(),
            }
            reason = f"retention: older than {self.days} days"
            try:
                self.audit.record(AuditAction.STORE_PURGE, "store", reason, payload)
            except AuditWriteError as error:
                logger.error("retention deleted %s: %s", deleted.to_dict(), error.message)
            else:
                logger.info("retention deleted %s older than %s", deleted.to_dict(), before.isoformat())
        return deleted

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="deskpilot-retention")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay_s)
        while True:
            await asyncio.to_thread(self.run_once)
            await asyncio.sleep(self.interval_s)


async def start_retention(
    settings: Settings, store: DecisionStore, audit: AuditRecorder
) -> RetentionTask | None:
    """The running retention task of a server process, or ``None`` when ``retention_days`` is not set."""
    if settings.retention_days is None:
        return None
    task = RetentionTask(store, audit, days=settings.retention_days, interval_s=settings.retention_interval_s)
    await task.start()
    return task
