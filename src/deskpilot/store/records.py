"""What the store keeps: one immutable record per triage decision and per piece of feedback."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deskpilot.domain import Route, TriageDecision


def utc_now() -> datetime:
    return datetime.now(UTC)


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """One triage decision as logged.

    Validated on construction so that a bad record fails where it is made, not later in the background
    writer where it would block the batches behind it. ``text`` must already be redacted: the store keeps
    it as given.
    """

    tenant: str
    request_id: str
    model_name: str
    model_version: str
    intent: str
    confidence: float
    route: Route
    latency_ms: float
    text: str
    ticket_id: str | None = None
    alternatives: tuple[tuple[str, float], ...] = ()
    fallback: bool = False
    reason: str = ""
    http_request_id: str | None = None  # the HTTP request (X-Request-ID) that asked for this decision
    review_sample: bool = False  # an auto route sampled for a person's review (the monitor's audit sample)
    channel: str | None = None  # the channel the caller named (email, chat, ...), if any
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.tenant or not self.request_id:
            raise ValueError("a decision record needs a tenant and a request id")
        scores = [self.confidence, self.latency_ms, *(score for _, score in self.alternatives)]
        if not all(math.isfinite(score) for score in scores):
            raise ValueError(f"{self.request_id}: confidence, alternatives and latency must be finite")
        _check_aware(self.created_at, "created_at")

    @classmethod
    def from_decision(
        cls,
        decision: TriageDecision,
        *,
        tenant: str,
        model_name: str,
        text: str,
        latency_ms: float,
        ticket_id: str | None = None,
        http_request_id: str | None = None,
        channel: str | None = None,
        created_at: datetime | None = None,
    ) -> DecisionRecord:
        """The record of a decision the service returned; ``text`` is the redacted text the model saw."""
        prediction = decision.prediction
        return cls(
            tenant=tenant,
            request_id=decision.request_id,
            ticket_id=ticket_id,
            model_name=model_name,
            model_version=decision.model_version,
            intent=prediction.intent,
            confidence=prediction.confidence,
            route=decision.route,
            alternatives=tuple((alt.intent, alt.confidence) for alt in prediction.alternatives),
            latency_ms=latency_ms,
            text=text,
            fallback=decision.fallback,
            reason=decision.reason,
            http_request_id=http_request_id,
            review_sample=decision.review,
            channel=channel,
            created_at=created_at or utc_now(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackRecord:
    """An agent's verdict on a logged decision, with what the model had predicted for comparison."""

    tenant: str
    request_id: str
    correct_intent: str
    predicted_intent: str
    model_version: str
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        _check_aware(self.created_at, "created_at")

    @property
    def correct(self) -> bool:
        return self.correct_intent == self.predicted_intent


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowRecord:
    """What a challenger in shadow answered for a request the champion served (nobody saw it).

    Keyed by (tenant, request id, model version): the champion's decision of the same request is the row
    it is compared with, and a later challenger scoring the same request is a separate record.
    """

    tenant: str
    request_id: str
    model_name: str
    model_version: str
    intent: str
    confidence: float
    route: Route
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.tenant or not self.request_id or not self.model_version:
            raise ValueError("a shadow record needs a tenant, a request id and a model version")
        if not math.isfinite(self.confidence):
            raise ValueError(f"{self.request_id}: confidence must be finite")
        _check_aware(self.created_at, "created_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowPair:
    """One request as both models saw it: the champion's logged decision, the challenger's shadow answer,
    and the agent's verdict when there is one."""

    tenant: str
    request_id: str
    champion_version: str
    champion_intent: str
    champion_confidence: float
    champion_route: Route
    challenger_version: str
    challenger_intent: str
    challenger_confidence: float
    challenger_route: Route
    correct_intent: str | None = None
    created_at: datetime = field(default_factory=utc_now)  # when the challenger answered

    @property
    def agreed(self) -> bool:
        return self.champion_intent == self.challenger_intent

    @property
    def confidence_shift(self) -> float:
        """Challenger minus champion confidence."""
        return self.challenger_confidence - self.champion_confidence


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedDecision:
    """A logged decision with the agent's verdict on it, when there is one (the monitor's and the
    feedback export's unit)."""

    decision: DecisionRecord
    correct_intent: str | None = None
    feedback_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorRunRecord:
    """One run of the monitor as stored: the range and tenant it read, and its whole result as JSON."""

    started_at: datetime
    finished_at: datetime
    since: datetime
    until: datetime
    tenant: str | None
    model_name: str
    model_version: str
    decisions: int
    fired: bool
    result: dict[str, Any]
    id: int | None = None

    def __post_init__(self) -> None:
        for name in ("started_at", "finished_at", "since", "until"):
            _check_aware(getattr(self, name), name)
