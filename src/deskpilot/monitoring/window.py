"""Windows of logged decisions: read from the store once, cut by time or by count, overall and per tenant.

Only the decisions of the watched model version are compared with its profile (a window read across a
promotion holds another version's decisions too; they are counted, not mixed in). Decisions answered by
the fallback or by nobody are left out for the same reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np

from deskpilot.domain import Route
from deskpilot.monitoring.types import Window
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import ReviewedDecision


@dataclass
class _Columns:
    """Decisions of one window as growing columns (cheaper than a list of records at a million rows)."""

    texts: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    auto: list[bool] = field(default_factory=list)
    review: list[bool] = field(default_factory=list)
    verdicts: list[str | None] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    def add(self, row: ReviewedDecision) -> None:
        decision = row.decision
        self.texts.append(decision.text)
        self.intents.append(decision.intent)
        self.confidence.append(decision.confidence)
        runner_up = decision.alternatives[0][1] if decision.alternatives else 0.0
        self.margin.append(decision.confidence - runner_up)
        self.auto.append(decision.route is Route.AUTO)
        self.review.append(decision.review_sample)
        self.verdicts.append(row.correct_intent)
        self.times.append(decision.created_at)

    def in_time_order(self) -> _Columns:
        """The same decisions by time: the scan reads them by id, which several writers can interleave."""
        order = sorted(range(len(self.times)), key=self.times.__getitem__)
        if all(a < b for a, b in pairwise(order)):
            return self
        return _Columns(
            texts=[self.texts[i] for i in order],
            intents=[self.intents[i] for i in order],
            confidence=[self.confidence[i] for i in order],
            margin=[self.margin[i] for i in order],
            auto=[self.auto[i] for i in order],
            review=[self.review[i] for i in order],
            verdicts=[self.verdicts[i] for i in order],
            times=[self.times[i] for i in order],
        )

    def window(
        self, tenant: str | None, start: datetime, end: datetime, versions: Counter[str], rows: slice
    ) -> Window:
        return Window(
            tenant=tenant,
            start=start,
            end=end,
            texts=self.texts[rows],
            intents=self.intents[rows],
            confidence=np.asarray(self.confidence[rows], dtype=np.float64),
            margin=np.asarray(self.margin[rows], dtype=np.float64),
            auto=np.asarray(self.auto[rows], dtype=bool),
            review_sample=np.asarray(self.review[rows], dtype=bool),
            correct_intent=self.verdicts[rows],
            model_versions=dict(versions),
        )


@dataclass(frozen=True)
class WindowPlan:
    """How to cut [since, until): one window, windows of ``every`` (time) or of ``count`` decisions."""

    since: datetime
    until: datetime
    every: timedelta | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise ValueError(f"the window must end after it starts ({self.since} .. {self.until})")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("a time window must be longer than zero")
        if self.count is not None and self.count < 1:
            raise ValueError("a count window needs at least one decision")


def read_windows(
    store: DecisionStore,
    plan: WindowPlan,
    *,
    model_name: str,
    model_version: str,
    tenant: str | None = None,
    per_tenant: bool = True,
) -> list[Window]:
    """The windows of ``plan``: for each, one over every tenant (``tenant=None``) and, with ``per_tenant``,
    one per tenant that had decisions in it; with ``tenant`` only that tenant's. Oldest first."""
    groups: dict[str | None, _Columns] = {}
    others: dict[str | None, Counter[str]] = {}
    pages = store.scan_reviewed(since=plan.since, until=plan.until, tenant=tenant)
    for row in _rows(pages):
        decision = row.decision
        scopes: tuple[str | None, ...] = (
            (decision.tenant,) if tenant is not None else (None, decision.tenant) if per_tenant else (None,)
        )
        for scope in scopes:
            others.setdefault(scope, Counter())[decision.model_version] += 1
            if (
                decision.fallback
                or not decision.intent
                or decision.model_name != model_name
                or decision.model_version != model_version
            ):
                continue
            groups.setdefault(scope, _Columns()).add(row)
    windows: list[Window] = []
    for scope, columns in sorted(groups.items(), key=lambda item: (item[0] is not None, item[0] or "")):
        windows.extend(_cut(columns, scope, plan, others[scope]))
    return sorted(windows, key=lambda window: (window.start, window.tenant is not None, window.tenant or ""))


def _rows(pages: Iterable[list[ReviewedDecision]]) -> Iterator[ReviewedDecision]:
    for page in pages:
        yield from page


def _cut(columns: _Columns, scope: str | None, plan: WindowPlan, versions: Counter[str]) -> list[Window]:
    columns = columns.in_time_order()
    times = columns.times
    if plan.count is not None:
        return [
            columns.window(
                scope,
                times[start],
                _after(times[min(start + plan.count, len(times)) - 1]),
                versions,
                slice(start, start + plan.count),
            )
            for start in range(0, len(times), plan.count)
        ]
    if plan.every is None:
        return [columns.window(scope, plan.since, plan.until, versions, slice(0, len(times)))]
    windows = []
    position = 0
    start = plan.since
    while start < plan.until:
        end = min(start + plan.every, plan.until)
        first = position
        while position < len(times) and times[position] < end:
            position += 1
        if position > first:
            windows.append(columns.window(scope, start, end, versions, slice(first, position)))
        start = end
    return windows


def _after(moment: datetime) -> datetime:
    """The end of a count window: just after its last decision (windows are half-open)."""
    return moment + timedelta(microseconds=1)
