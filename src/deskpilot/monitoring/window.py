"""Windows of logged decisions: read from the store once, cut by time or by count, overall and per tenant.

Only the decisions of the watched model version are compared with its profile (a window read across a
promotion holds another version's decisions too; they are counted, not mixed in). Decisions answered by
the fallback or by nobody are left out for the same reason.

The store hands the range over as columns (:meth:`DecisionStore.monitor_columns`), not as records: at a
million decisions, building records cost more than every signal together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from deskpilot.domain import Route
from deskpilot.monitoring.types import Window
from deskpilot.store.base import DecisionStore
from deskpilot.store.columns import DecisionColumns, as_utc, to_datetime64


@dataclass(frozen=True)
class _Scope:
    """The watched decisions of one scope (every tenant, or one), as row numbers into the read's columns in
    time order: the read is in id order, which several writers can interleave."""

    tenant: str | None
    columns: DecisionColumns
    rows: np.ndarray
    versions: Counter[str]

    @property
    def times(self) -> np.ndarray:
        times: np.ndarray = self.columns.created_at[self.rows]
        return times

    def window(self, start: datetime, end: datetime, part: slice) -> Window:
        rows, c = self.rows[part], self.columns
        confidence = c.confidence[rows]
        return Window(
            tenant=self.tenant,
            start=start,
            end=end,
            texts=c.text[rows].tolist(),
            intents=c.intent[rows].tolist(),
            confidence=confidence,
            margin=confidence - c.runner_up[rows],
            auto=np.asarray(c.route[rows] == Route.AUTO.value, dtype=bool),
            review_sample=c.review_sample[rows],
            correct_intent=c.correct_intent[rows].tolist(),
            model_versions=dict(self.versions),
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
    columns = store.monitor_columns(since=plan.since, until=plan.until, tenant=tenant)
    watched = (
        ~columns.fallback
        & (columns.intent != "")
        & (columns.model_name == model_name)
        & (columns.model_version == model_version)
    )
    everyone = np.ones(len(columns), dtype=bool)
    masks: list[tuple[str | None, np.ndarray]] = [(tenant, everyone)]
    if tenant is None and per_tenant:
        masks += [(name, columns.tenant == name) for name in sorted(set(columns.tenant.tolist()))]
    windows: list[Window] = []
    for scope, mask in masks:
        rows = np.flatnonzero(mask & watched)
        if rows.size == 0:
            continue
        in_time = rows[np.argsort(columns.created_at[rows], kind="stable")]  # ties keep storage order
        versions = Counter(columns.model_version[mask].tolist())
        windows.extend(_cut(_Scope(scope, columns, in_time, versions), plan))
    return sorted(windows, key=lambda window: (window.start, window.tenant is not None, window.tenant or ""))


def _cut(scope: _Scope, plan: WindowPlan) -> list[Window]:
    times = scope.times
    size = len(times)
    if plan.count is not None:
        return [
            scope.window(
                as_utc(times[start]),
                _after(as_utc(times[min(start + plan.count, size) - 1])),
                slice(start, start + plan.count),
            )
            for start in range(0, size, plan.count)
        ]
    if plan.every is None:
        return [scope.window(plan.since, plan.until, slice(0, size))]
    windows = []
    position = 0
    start = plan.since
    while start < plan.until:
        end = min(start + plan.every, plan.until)
        first = position
        position = int(np.searchsorted(times, to_datetime64(end), side="left"))
        if position > first:
            windows.append(scope.window(start, end, slice(first, position)))
        start = end
    return windows


def _after(moment: datetime) -> datetime:
    """The end of a count window: just after its last decision (windows are half-open)."""
    return moment + timedelta(microseconds=1)
