"""Verdicts as the closed loop reads them: every reviewed decision once, its text redacted again, grouped by
normalized text and verdict.

The store already keeps redacted text; it is redacted again here because the loop writes it into files and
snapshots that outlive the store's retention, and a pattern added since the decision was logged must still
apply. Ranges select verdicts by the time they were given (a decision made last month and corrected today
is new feedback today).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from deskpilot.config import Settings
from deskpilot.data.snapshots import TextRedactor
from deskpilot.data.text import normalize_texts
from deskpilot.domain import Route
from deskpilot.errors import UsageError
from deskpilot.service.keys import validate_tenant
from deskpilot.store.base import OTHER_INTENT, DecisionStore
from deskpilot.store.records import ReviewedDecision
from deskpilot.workflows.keys import listing

AUDIT_SAMPLE = "audit_sample"  # an auto route sampled for review: the unbiased kind
HUMAN_ROUTE = "human_route"  # a person was asked because the model was unsure
AUTO_CORRECTION = "auto_correction"  # an auto route an agent corrected without being asked


def reviewer_kind(review_sample: bool, route: Route) -> str:
    """Why a person looked at the decision: the three kinds differ in how biased their sample is."""
    if review_sample:
        return AUDIT_SAMPLE
    return HUMAN_ROUTE if route is Route.HUMAN else AUTO_CORRECTION


@dataclass(frozen=True, slots=True)
class Verdict:
    """One agent's label for one logged decision, with the decision's provenance."""

    tenant: str
    request_id: str
    text: str  # redacted
    key: str  # the normalized text: what duplicates and conflicts are judged on
    label: str
    predicted: str
    confidence: float
    route: str
    reviewer: str
    model_name: str
    model_version: str
    decided_at: datetime
    verdict_at: datetime

    @property
    def corrected(self) -> bool:
        return self.label != self.predicted


@dataclass(frozen=True)
class VerdictGroup:
    """Every verdict that gives ``label`` to one normalized text, oldest first."""

    key: str
    label: str
    verdicts: tuple[Verdict, ...]

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({v.tenant for v in self.verdicts}))

    @property
    def count(self) -> int:
        return len(self.verdicts)

    @property
    def latest(self) -> Verdict:
        return self.verdicts[-1]

    @property
    def other(self) -> bool:
        return self.label == OTHER_INTENT

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "tenants": list(self.tenants)}


@dataclass(frozen=True)
class Reading:
    """The verdicts given in [since, until) (one tenant's, or everyone's), and those left out, by reason."""

    since: datetime | None
    until: datetime
    tenant: str | None
    verdicts: tuple[Verdict, ...]
    skipped: dict[str, int]
    redactions: dict[str, int]  # what redacting the stored texts again found (usually nothing)

    def by_text(self) -> dict[str, list[VerdictGroup]]:
        """Normalized text -> its verdict groups, labels in order; texts in order of their first verdict."""
        found: dict[str, dict[str, list[Verdict]]] = defaultdict(lambda: defaultdict(list))
        for verdict in sorted(self.verdicts, key=lambda v: (v.verdict_at, v.tenant, v.request_id)):
            found[verdict.key][verdict.label].append(verdict)
        return {
            key: [VerdictGroup(key, label, tuple(found[key][label])) for label in sorted(found[key])]
            for key in found
        }

    @property
    def last_verdict_at(self) -> datetime | None:
        return max((v.verdict_at for v in self.verdicts), default=None)

    def counts(self) -> dict[str, Any]:
        verdicts = self.verdicts
        return {
            "verdicts": len(verdicts),
            "corrections": sum(v.corrected for v in verdicts),
            "other_intent": sum(v.label == OTHER_INTENT for v in verdicts),
            "by_tenant": dict(sorted(Counter(v.tenant for v in verdicts).items())),
            "by_reviewer": dict(sorted(Counter(v.reviewer for v in verdicts).items())),
            "skipped": dict(sorted(self.skipped.items())),
            "redactions": dict(sorted(self.redactions.items())),
        }


def read_verdicts(
    store: DecisionStore,
    redactor: TextRedactor,
    *,
    since: datetime | None,
    until: datetime,
    tenant: str | None = None,
    max_text_length: int,
) -> Reading:
    """Every verdict given in [since, until), redacted again; texts left empty or grown past the contract's
    length by redaction are skipped and counted, so that every verdict read can enter a dataset."""
    verdicts: list[Verdict] = []
    skipped: Counter[str] = Counter()
    redactions: Counter[str] = Counter()
    # a decision comes before its verdict, so ``until`` bounds the decisions too; ``since`` cannot
    for page in store.scan_reviewed(until=until, tenant=tenant, reviewed_only=True):
        wanted = [row for row in page if _in_range(row, since, until)]
        if not wanted:
            continue
        texts, found = redactor.redact_many([row.decision.text.strip() for row in wanted])
        redactions.update(found)
        keys = normalize_texts(pd.Series(texts, dtype=object)).tolist()
        for row, redacted, key in zip(wanted, texts, keys, strict=True):
            text = redacted.strip()
            if not text or not key:
                skipped["text_empty"] += 1
            elif len(text) > max_text_length:
                skipped["text_too_long"] += 1
            else:
                verdicts.append(_verdict(row, text, key))
    return Reading(since, until, tenant, tuple(verdicts), dict(skipped), dict(redactions))


def _in_range(row: ReviewedDecision, since: datetime | None, until: datetime) -> bool:
    at = row.feedback_at
    return row.correct_intent is not None and at is not None and (since is None or at >= since) and at < until


def _verdict(row: ReviewedDecision, text: str, key: str) -> Verdict:
    decision = row.decision
    assert row.correct_intent is not None  # checked by _in_range
    assert row.feedback_at is not None
    return Verdict(
        tenant=decision.tenant,
        request_id=decision.request_id,
        text=text,
        key=key,
        label=row.correct_intent,
        predicted=decision.intent,
        confidence=decision.confidence,
        route=decision.route.value,
        reviewer=reviewer_kind(decision.review_sample, decision.route),
        model_name=decision.model_name,
        model_version=decision.model_version,
        decided_at=decision.created_at,
        verdict_at=row.feedback_at,
    )


def check_range(since: datetime | None, until: datetime) -> None:
    if since is not None and since >= until:
        raise UsageError(
            f"--since {since.isoformat()} is not before --until {until.isoformat()}: the range is empty",
            details={"since": since.isoformat(), "until": until.isoformat()},
        )


def check_tenant(settings: Settings, store: DecisionStore, tenant: str | None) -> None:
    """A tenant to filter on must be one this deployment knows: a key names it, or it has decisions. A
    misspelt tenant would otherwise export nothing, or retrain on nobody's feedback, without a word."""
    if tenant is None:
        return
    validate_tenant(tenant)
    known = sorted({record.tenant for record in listing(settings)})
    if tenant in known or store.decisions(tenant, limit=1):
        return
    hint = f"; tenants with keys: {', '.join(known)}" if known else ""
    raise UsageError(
        f"unknown tenant {tenant!r}: no API key names it and the store holds none of its decisions{hint}",
        details={"tenant": tenant},
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def tenants_of(groups: Iterable[VerdictGroup]) -> tuple[str, ...]:
    return tuple(sorted({tenant for group in groups for tenant in group.tenants}))
