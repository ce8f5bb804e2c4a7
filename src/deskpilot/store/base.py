"""What DeskPilot needs from a decision store, independent of the database behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from deskpilot.store.columns import MONITOR_PAGE, DecisionColumns
from deskpilot.store.queue import COUNT_CAP, Cursor, QueuePage, QueueQuery
from deskpilot.store.records import (
    DecisionRecord,
    FeedbackRecord,
    MonitorRunRecord,
    ReviewedDecision,
    ShadowPair,
    ShadowRecord,
)

DEFAULT_PAGE = 100
MAX_PAGE = 10_000
# The correct intent of a verdict saying "none of the intents the model knows": the message fits no queue, so
# any intent the model chose was wrong. Every other verdict names one of the serving models' classes.
OTHER_INTENT = "__other__"


def check_page(limit: int, offset: int = 0) -> None:
    """Reject paging that a database would read differently (SQLite takes a negative limit as 'all')."""
    if not 0 <= limit <= MAX_PAGE or offset < 0:
        raise ValueError(f"limit must be in 0..{MAX_PAGE} and offset >= 0, got {limit} and {offset}")


class DecisionStore(ABC):
    """The decision log and the feedback on it.

    Every row carries its tenant and every read names one: a request of another tenant behaves exactly
    like one that does not exist. The few operator's reads that cross tenants say so. Failures surface as
    :class:`StoreError` (a database that cannot be reached as its subclass :class:`StoreUnavailableError`),
    never as a driver's exception.
    """

    @abstractmethod
    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Store a batch in one transaction; a record whose (tenant, request id) is already stored is
        skipped, so that a flush retried after a lost acknowledgement neither duplicates nor fails."""

    @abstractmethod
    def get_decision(self, tenant: str, request_id: str) -> DecisionRecord | None: ...

    @abstractmethod
    def decisions(self, tenant: str, limit: int = DEFAULT_PAGE, offset: int = 0) -> list[DecisionRecord]:
        """The tenant's decisions, newest first (the order an agent pages back through them)."""

    @abstractmethod
    def decisions_for_http_request(
        self, http_request_id: str, *, tenant: str | None = None
    ) -> list[DecisionRecord]:
        """Every decision the HTTP request ``http_request_id`` (the access log's ``request_id``, the
        ``X-Request-ID`` header) asked for, oldest first; at most :data:`MAX_PAGE`.

        An operator's read, and like :meth:`shadow_comparison` it crosses tenants on purpose: an access-log
        line is where an investigation starts, before anyone knows the tenant. Pass ``tenant`` to restrict
        it to one. A caller may choose its own ``X-Request-ID``, so the id is not unique: two tenants, or one
        client reusing an id, can have decisions under the same one.
        """

    @abstractmethod
    def find_decision(self, request_id: str) -> list[DecisionRecord]:
        """The decisions whose own id is ``request_id``, in every tenant, oldest first.

        An operator's read that crosses tenants, as :meth:`decisions_for_http_request`: decision ids are
        unique per tenant only, so more than one tenant may have the same one.
        """

    @abstractmethod
    def add_feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        """Record an agent's verdict on one of the tenant's decisions.

        One verdict per request: a second one replaces the first (correct intent and time), because the
        latest correction is the one quality metrics and retraining must use.
        :class:`StoreNotFoundError` when the tenant has no such request. ``correct_intent`` is stored as
        given: the caller has checked it is one of the serving models' classes or :data:`OTHER_INTENT`.
        """

    @abstractmethod
    def feedback(
        self, tenant: str, since: datetime | None = None, limit: int = MAX_PAGE
    ) -> list[FeedbackRecord]:
        """The tenant's feedback given at or after ``since``, oldest first (so that a consumer can read
        on from the last time it saw)."""

    @abstractmethod
    def queue_page(self, tenant: str, query: QueueQuery, *, limit: int) -> QueuePage:
        """One page of the tenant's queue (decisions routed to a person and the audit sample of auto
        routes) matching ``query``, newest first, each with its verdict if any; see
        :mod:`deskpilot.store.queue`. ValueError for a limit outside 1..``MAX_QUEUE_PAGE``."""

    @abstractmethod
    def queue_count(self, tenant: str, query: QueueQuery, *, cap: int = COUNT_CAP) -> int:
        """How many queued decisions match ``query`` (its cursor aside), counting at most ``cap + 1``: a
        result above ``cap`` means "more than ``cap``"."""

    @abstractmethod
    def queue_position(self, tenant: str, request_id: str) -> Cursor | None:
        """Where one of the tenant's decisions sits in the queue's order (its cursor), or None."""

    @abstractmethod
    def verdict(self, tenant: str, request_id: str) -> FeedbackRecord | None:
        """The verdict on one of the tenant's decisions, if a person gave one."""

    @abstractmethod
    def write_shadow(self, records: Sequence[ShadowRecord]) -> None:
        """Store a batch of shadow answers in one transaction; like :meth:`write_decisions`, a record whose
        (tenant, request id, model version) is already stored is skipped."""

    @abstractmethod
    def shadow_comparison(
        self,
        model_name: str,
        challenger_version: str,
        since: datetime | None = None,
        *,
        tenant: str | None = None,
    ) -> list[ShadowPair]:
        """Every shadow answer of ``challenger_version`` (at or after ``since``) next to the champion's
        decision of the same request and its feedback, if any; oldest first.

        An operator's read, and the one read that crosses tenants on purpose: the agreement report is
        about the model, not about one customer. Pass ``tenant`` to restrict it to one. Requests whose
        decision was not logged (dropped, or answered by the fallback instead of the champion) are left
        out, since there is nothing to compare with.
        """

    @abstractmethod
    def ping(self) -> None:
        """Return if the store is usable; :class:`StoreUnavailableError` if it cannot be reached, and
        :class:`StoreError` if its schema is not the one this code needs."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

    @abstractmethod
    def purge(self, before: datetime) -> DeletedRows:
        """Delete, across tenants, the decisions made before ``before`` with all their feedback, and the
        shadow answers given before it; a batch per transaction, so that a long purge never holds the
        write lock for long. The audit log is never purged."""

    @abstractmethod
    def erase_ticket(self, ticket_ids: Sequence[str], *, tenant: str | None = None) -> DeletedRows:
        """Delete, in one transaction, every decision whose stored ticket id is one of ``ticket_ids`` (the
        forms one ticket's id may be stored in) in ``tenant`` (every tenant when ``None``), with their
        feedback and the shadow answers to the same requests."""

    @abstractmethod
    def reviewed_page(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        reviewed_only: bool = False,
        after_id: int = 0,
        limit: int = MAX_PAGE,
    ) -> ReviewedPage:
        """Decisions made in [``since``, ``until``) with their verdict, in the order they were stored
        (ascending id), starting after ``after_id``; with ``reviewed_only`` just those with a verdict.

        An operator's read that crosses tenants unless ``tenant`` is given: the monitor watches the model
        for everyone and for each tenant, and the feedback export gathers corrections from all of them.
        """

    def scan_reviewed(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        reviewed_only: bool = False,
        page: int = MAX_PAGE,
    ) -> Iterator[list[ReviewedDecision]]:
        """Every page of :meth:`reviewed_page` in turn (keyset paging: rows stored meanwhile are seen
        once or not at all, never twice)."""
        after = 0
        while True:
            found = self.reviewed_page(
                since=since,
                until=until,
                tenant=tenant,
                reviewed_only=reviewed_only,
                after_id=after,
                limit=page,
            )
            if found.rows:
                yield found.rows
            if len(found.rows) < page:
                return
            after = found.last_id

    @abstractmethod
    def monitor_columns(
        self,
        *,
        since: datetime,
        until: datetime,
        tenant: str | None = None,
        page: int = MONITOR_PAGE,
    ) -> DecisionColumns:
        """The columns the monitor reads of every decision made in [``since``, ``until``), with its verdict,
        in the order they were stored (ascending id), read in keyset pages of ``page`` rows.

        :meth:`scan_reviewed` without a record per row: at a million decisions building the records
        cost the monitor more than every signal together. Crosses tenants unless ``tenant`` is given, as
        :meth:`reviewed_page` does.
        """

    @abstractmethod
    def add_monitor_run(self, record: MonitorRunRecord) -> int:
        """Store one monitor run; returns its id."""

    @abstractmethod
    def monitor_runs(
        self,
        limit: int = DEFAULT_PAGE,
        *,
        model_name: str | None = None,
        overall: bool = False,
        fired: bool = False,
    ) -> list[MonitorRunRecord]:
        """The latest ``limit`` monitor runs, oldest first (the order a plot over time reads them); only
        those of ``model_name`` when given, only all-tenant windows when ``overall``, only windows where a
        signal fired when ``fired``."""

    def storage_problems(self) -> list[tuple[str, str]]:
        """What keeps writes from lasting although the database answers, as (message without the
        database's location, message with it): a SQLite file deleted or replaced since it was opened."""
        return []


@dataclass(frozen=True)
class ReviewedPage:
    """One page of :meth:`DecisionStore.reviewed_page` and the id to continue after."""

    rows: list[ReviewedDecision]
    last_id: int


@dataclass(frozen=True)
class DeletedRows:
    """How many rows a purge or an erasure deleted, per table."""

    decisions: int = 0
    feedback: int = 0
    shadow: int = 0
    suggestions: int = 0  # reply suggestions (with their verdicts), by age or of the erased decisions
    knowledge: int = 0  # knowledge items (resolved tickets) erased by their id

    @property
    def total(self) -> int:
        return self.decisions + self.feedback + self.shadow + self.suggestions + self.knowledge

    def __add__(self, other: DeletedRows) -> DeletedRows:
        return DeletedRows(
            self.decisions + other.decisions,
            self.feedback + other.feedback,
            self.shadow + other.shadow,
            self.suggestions + other.suggestions,
            self.knowledge + other.knowledge,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "decisions": self.decisions,
            "feedback": self.feedback,
            "shadow": self.shadow,
            "suggestions": self.suggestions,
            "knowledge": self.knowledge,
        }
