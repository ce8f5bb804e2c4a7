"""The shadow report: how a challenger's answers compare with the champion's on the same requests.

Computed from the shadow log joined with the decision log and the feedback
(:meth:`deskpilot.store.base.DecisionStore.shadow_comparison`), so it reads the same from any process or
replica and survives restarts. What it measures:

* agreement: the share of requests where both models chose the same intent, with a 95% Wilson interval,
  overall and per champion intent (worst first; intents seen fewer than ``min_count`` times are listed
  apart, since their rates say little);
* confidence shift: challenger minus champion confidence, its mean, median, spread and histogram;
* route changes: the 2×2 matrix of champion route × challenger route (``auto``/``human``);
* where an agent gave feedback: the accuracy of each model on those same requests, and McNemar's test of
  the difference (only the requests where exactly one model was right count); per tenant, how many
  verdicts each gave, and the test again without the one tenant whose verdicts move it most, since a
  verdict is one tenant's claim. The store keeps one verdict per request (the latest), so a repeat never
  counts twice here either. The automatic rollback rule goes further (each tenant's weight is capped and no
  single tenant decides, :mod:`deskpilot.rollout.rules`); the report shows the same question to a person.

Rendering (Markdown, HTML, figures) lives in :mod:`deskpilot.rollout.render`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from deskpilot.domain import Route
from deskpilot.evaluation.significance import McNemarResult, Proportion, mcnemar
from deskpilot.store.records import ShadowPair

MIN_COUNT = 5
SHIFT_EDGES = tuple(round(-1.0 + 0.05 * i, 2) for i in range(41))  # confidence shift lies in [-1, 1]


@dataclass(frozen=True)
class IntentAgreement:
    intent: str  # the champion's intent
    agreement: Proportion
    low_count: bool  # fewer than min_count comparisons

    def to_dict(self) -> dict[str, Any]:
        return {"intent": self.intent, "low_count": self.low_count, **self.agreement.to_dict()}


@dataclass(frozen=True)
class ShiftStats:
    """Challenger minus champion confidence over the compared requests."""

    mean: float
    median: float
    std: float
    p05: float
    p95: float
    mean_agreed: float | None  # the shift where the intents agree, and where they do not
    mean_disagreed: float | None
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "median": self.median,
            "std": self.std,
            "p05": self.p05,
            "p95": self.p95,
            "mean_agreed": self.mean_agreed,
            "mean_disagreed": self.mean_disagreed,
            "histogram": {"edges": list(self.edges), "counts": list(self.counts)},
        }


@dataclass(frozen=True)
class RouteMatrix:
    """Counts of champion route → challenger route."""

    auto_to_auto: int
    auto_to_human: int
    human_to_auto: int
    human_to_human: int

    @property
    def total(self) -> int:
        return self.auto_to_auto + self.auto_to_human + self.human_to_auto + self.human_to_human

    @property
    def changed(self) -> int:
        return self.auto_to_human + self.human_to_auto

    @property
    def champion_auto(self) -> int:
        return self.auto_to_auto + self.auto_to_human

    @property
    def challenger_auto(self) -> int:
        return self.auto_to_auto + self.human_to_auto

    def cells(self) -> list[list[int]]:
        """Rows: champion auto, human; columns: challenger auto, human."""
        return [[self.auto_to_auto, self.auto_to_human], [self.human_to_auto, self.human_to_human]]

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "auto_to_auto": self.auto_to_auto,
            "auto_to_human": self.auto_to_human,
            "human_to_auto": self.human_to_auto,
            "human_to_human": self.human_to_human,
            "changed": self.changed,
            "champion_auto_rate": self.champion_auto / total if total else None,
            "challenger_auto_rate": self.challenger_auto / total if total else None,
        }


@dataclass(frozen=True)
class TenantFeedback:
    """One tenant's verdicts among the requests both models answered."""

    tenant: str
    n: int
    champion_correct: int
    challenger_correct: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "n": self.n,
            "champion_correct": self.champion_correct,
            "challenger_correct": self.challenger_correct,
        }


@dataclass(frozen=True)
class LeaveOneOut:
    """McNemar's test without one tenant's verdicts: the tenant whose absence weakens the result most."""

    tenant: str
    n: int
    test: McNemarResult

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "n": self.n, "mcnemar": self.test.to_dict()}


@dataclass(frozen=True)
class PairedAccuracy:
    """Accuracy of both models on the same requests with feedback."""

    champion: Proportion
    challenger: Proportion
    test: McNemarResult
    by_tenant: tuple[TenantFeedback, ...] = ()  # most verdicts first
    without_one: LeaveOneOut | None = None  # None with fewer than two tenants

    @property
    def largest_share(self) -> float | None:
        """The share of the verdicts that the tenant with the most of them gave."""
        return self.by_tenant[0].n / self.n if self.by_tenant and self.n else None

    @property
    def n(self) -> int:
        return self.champion.n

    @property
    def difference(self) -> float:
        """Challenger minus champion accuracy."""
        return (self.challenger.successes - self.champion.successes) / self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "difference": self.difference,
            "mcnemar": self.test.to_dict(),
            "tenants": [row.to_dict() for row in self.by_tenant],
            "largest_tenant_share": self.largest_share,
            "without_one_tenant": None if self.without_one is None else self.without_one.to_dict(),
        }


@dataclass(frozen=True)
class ShadowReport:
    model_name: str
    challenger_version: str
    champion_versions: dict[str, int]  # champion version -> compared requests (usually one)
    tenants: int
    since: datetime | None
    first_at: datetime
    last_at: datetime
    generated_at: datetime
    agreement: Proportion
    by_intent: list[IntentAgreement]  # worst first; low-count intents after the others
    min_count: int
    shift: ShiftStats
    routes: RouteMatrix
    feedback: PairedAccuracy | None

    @property
    def compared(self) -> int:
        return self.agreement.n

    @property
    def ranked_intents(self) -> list[IntentAgreement]:
        """Intents with at least ``min_count`` comparisons, worst first."""
        return [row for row in self.by_intent if not row.low_count]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "challenger_version": self.challenger_version,
            "champion_versions": dict(self.champion_versions),
            "tenants": self.tenants,
            "since": None if self.since is None else self.since.isoformat(),
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "compared": self.compared,
            "agreement": self.agreement.to_dict(),
            "min_count": self.min_count,
            "by_intent": [row.to_dict() for row in self.by_intent],
            "confidence_shift": self.shift.to_dict(),
            "routes": self.routes.to_dict(),
            "feedback": None if self.feedback is None else self.feedback.to_dict(),
        }


def build_report(
    pairs: Sequence[ShadowPair],
    *,
    model_name: str,
    challenger_version: str,
    since: datetime | None = None,
    min_count: int = MIN_COUNT,
    generated_at: datetime | None = None,
) -> ShadowReport:
    """The report of these comparisons; ``ValueError`` when there are none (nothing to report)."""
    if not pairs:
        raise ValueError(f"no shadow comparisons for {model_name} version {challenger_version}")
    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    agreed = [pair.agreed for pair in pairs]
    return ShadowReport(
        model_name=model_name,
        challenger_version=challenger_version,
        champion_versions=dict(Counter(pair.champion_version for pair in pairs).most_common()),
        tenants=len({pair.tenant for pair in pairs}),
        since=since,
        first_at=min(pair.created_at for pair in pairs),
        last_at=max(pair.created_at for pair in pairs),
        generated_at=generated_at or datetime.now(UTC),
        agreement=Proportion(sum(agreed), len(pairs)),
        by_intent=intent_agreement(pairs, min_count),
        min_count=min_count,
        shift=shift_stats(pairs),
        routes=route_matrix(pairs),
        feedback=paired_accuracy(pairs),
    )


def intent_agreement(pairs: Sequence[ShadowPair], min_count: int = MIN_COUNT) -> list[IntentAgreement]:
    """Agreement per champion intent: the ranked ones worst first (ties: more requests first), then the
    low-count ones in the same order."""
    compared: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for pair in pairs:
        compared[pair.champion_intent] += 1
        agreed[pair.champion_intent] += pair.agreed
    rows = [
        IntentAgreement(intent, Proportion(agreed[intent], n), n < min_count)
        for intent, n in compared.items()
    ]
    return sorted(
        rows, key=lambda r: (r.low_count, agreed[r.intent] / r.agreement.n, -r.agreement.n, r.intent)
    )


def shift_stats(pairs: Sequence[ShadowPair]) -> ShiftStats:
    shifts = np.array([pair.confidence_shift for pair in pairs], dtype=float)
    agreed = np.array([pair.agreed for pair in pairs], dtype=bool)
    counts, _ = np.histogram(np.clip(shifts, -1.0, 1.0), bins=np.array(SHIFT_EDGES))
    return ShiftStats(
        mean=float(shifts.mean()),
        median=float(np.median(shifts)),
        std=float(shifts.std()),
        p05=float(np.percentile(shifts, 5)),
        p95=float(np.percentile(shifts, 95)),
        mean_agreed=float(shifts[agreed].mean()) if agreed.any() else None,
        mean_disagreed=float(shifts[~agreed].mean()) if (~agreed).any() else None,
        edges=SHIFT_EDGES,
        counts=tuple(int(c) for c in counts),
    )


def route_matrix(pairs: Sequence[ShadowPair]) -> RouteMatrix:
    cells = Counter((pair.champion_route, pair.challenger_route) for pair in pairs)
    return RouteMatrix(
        auto_to_auto=cells[(Route.AUTO, Route.AUTO)],
        auto_to_human=cells[(Route.AUTO, Route.HUMAN)],
        human_to_auto=cells[(Route.HUMAN, Route.AUTO)],
        human_to_human=cells[(Route.HUMAN, Route.HUMAN)],
    )


def paired_accuracy(pairs: Sequence[ShadowPair]) -> PairedAccuracy | None:
    """Both models scored on the requests with feedback; ``None`` when no request has any."""
    judged = [pair for pair in pairs if pair.correct_intent is not None]
    if not judged:
        return None
    champion = np.array([pair.champion_intent == pair.correct_intent for pair in judged])
    challenger = np.array([pair.challenger_intent == pair.correct_intent for pair in judged])
    tenants = np.array([pair.tenant for pair in judged])
    by_tenant = sorted(
        (
            TenantFeedback(
                tenant=str(tenant),
                n=int((mine := tenants == tenant).sum()),
                champion_correct=int(champion[mine].sum()),
                challenger_correct=int(challenger[mine].sum()),
            )
            for tenant in np.unique(tenants)
        ),
        key=lambda row: (-row.n, row.tenant),
    )
    return PairedAccuracy(
        champion=Proportion(int(champion.sum()), len(judged)),
        challenger=Proportion(int(challenger.sum()), len(judged)),
        test=mcnemar(champion, challenger),
        by_tenant=tuple(by_tenant),
        without_one=_without_one(tenants, champion, challenger, [row.tenant for row in by_tenant]),
    )


def _without_one(
    tenants: np.ndarray, champion: np.ndarray, challenger: np.ndarray, names: list[str]
) -> LeaveOneOut | None:
    """The test left without each tenant in turn; the one with the highest p-value (the tenant the result
    leans on most; ties: the one with more verdicts, as ``names`` is ordered)."""
    if len(names) < 2:
        return None
    worst: LeaveOneOut | None = None
    for tenant in names:
        rest = tenants != tenant
        left = LeaveOneOut(tenant, int(rest.sum()), mcnemar(champion[rest], challenger[rest]))
        if worst is None or left.test.p_value > worst.test.p_value:
            worst = left
    return worst
