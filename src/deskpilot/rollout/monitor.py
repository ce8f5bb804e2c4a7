"""What the service saw of champion and challenger: sliding windows for the rules, totals for the report.

Thread-safe: requests record from the event loop and the model threads, the rule check reads from its own
task. Windows keep raw events for ``window_s`` seconds (bounded by traffic in that time).

Agents' verdicts are kept per (tenant, decision): a second verdict on the same decision replaces the first
(in the window, where the first one was, and in the totals), so posting the same verdict again, or changing
it, never adds weight. The rules (:mod:`deskpilot.rollout.rules`) get them per tenant, to cap each tenant's
weight and to check that no single tenant decides.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from deskpilot.domain import Role
from deskpilot.rollout.rules import TenantCounts, WindowStats

WATCHED = (Role.CHAMPION, Role.CHALLENGER)  # the fallback is not under rollout
# Verdicts remembered since the challenger started (about 15 MB at most). A repeat on a decision forgotten
# beyond that counts as a new verdict: bounded memory over perfect memory, and the rules' per-tenant cap and
# "no single tenant" test still bound what such repeats can do.
REMEMBERED_VERDICTS = 50_000


@dataclass
class Agreement:
    """Shadow (or paired) comparison totals since the challenger started, for the report and /v1/models."""

    compared: int = 0
    agreed: int = 0
    confidence_shift_sum: float = 0.0
    auto_to_human: int = 0
    human_to_auto: int = 0
    by_intent: Counter[str] = field(default_factory=Counter)  # champion intent -> compared
    agreed_by_intent: Counter[str] = field(default_factory=Counter)
    judged: int = 0  # requests with feedback that both models answered, one verdict each
    champion_correct: int = 0
    challenger_correct: int = 0
    judged_by_tenant: Counter[str] = field(default_factory=Counter)

    def to_dict(self, top: int = 20) -> dict[str, object]:
        rate = self.agreed / self.compared if self.compared else None
        worst = sorted(
            self.by_intent, key=lambda i: (self.agreed_by_intent[i] / self.by_intent[i], -self.by_intent[i])
        )[:top]
        return {
            "compared": self.compared,
            "agreement_rate": rate,
            "mean_confidence_shift": self.confidence_shift_sum / self.compared if self.compared else None,
            "route_changes": {"auto_to_human": self.auto_to_human, "human_to_auto": self.human_to_auto},
            "least_agreed_intents": [
                {
                    "intent": i,
                    "compared": self.by_intent[i],
                    "agreement_rate": self.agreed_by_intent[i] / self.by_intent[i],
                }
                for i in worst
            ],
            "feedback": {
                "judged": self.judged,
                "tenants": sum(1 for n in self.judged_by_tenant.values() if n > 0),
                "champion_accuracy": self.champion_correct / self.judged if self.judged else None,
                "challenger_accuracy": self.challenger_correct / self.judged if self.judged else None,
            },
        }


class RolloutMonitor:
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Role, deque[tuple[float, float, bool]]] = {role: deque() for role in WATCHED}
        self._comparisons: deque[tuple[float, bool, str | None]] = deque()  # time, agreed, tenant
        self._verdicts: OrderedDict[tuple[str, str], _Verdict] = OrderedDict()  # first seen first
        self.agreement = Agreement()

    def reset(self) -> None:
        """A new challenger starts with empty windows and totals."""
        with self._lock:
            for calls in self._calls.values():
                calls.clear()
            self._verdicts.clear()
            self._comparisons.clear()
            self.agreement = Agreement()

    def observe_call(self, role: Role, latency_ms: float, *, error: bool) -> None:
        with self._lock:
            self._calls[role].append((self._clock(), latency_ms, error))

    def observe_comparison(
        self,
        *,
        champion_intent: str,
        challenger_intent: str,
        confidence_shift: float,
        champion_auto: bool,
        challenger_auto: bool,
        tenant: str | None = None,
    ) -> None:
        """One request both models answered; ``tenant`` (whose request) lets the disagreement rule check
        that no single tenant's traffic decides it."""
        agreed = champion_intent == challenger_intent
        with self._lock:
            self._comparisons.append((self._clock(), agreed, tenant))
            totals = self.agreement
            totals.compared += 1
            totals.agreed += agreed
            totals.confidence_shift_sum += confidence_shift
            totals.auto_to_human += champion_auto and not challenger_auto
            totals.human_to_auto += challenger_auto and not champion_auto
            totals.by_intent[champion_intent] += 1
            totals.agreed_by_intent[champion_intent] += agreed

    def observe_verdict(self, tenant: str, decision: str, scores: Mapping[Role, bool]) -> None:
        """A tenant's verdict on one of its decisions: whether each watched model that answered it was right.

        With both models scored (a shadow answer next to the champion's) it also counts in the paired
        totals. A verdict on a decision that already has one replaces it: its scores change, its time in the
        window does not.
        """
        scored = {role: bool(right) for role, right in scores.items() if role in WATCHED}
        if not scored:
            return
        key = (tenant, decision)
        champion, challenger = scored.get(Role.CHAMPION), scored.get(Role.CHALLENGER)
        with self._lock:
            earlier = self._verdicts.get(key)
            if earlier is not None:
                self._pair(earlier, -1)
                earlier.champion, earlier.challenger = champion, challenger
                self._pair(earlier, +1)
                return
            verdict = _Verdict(self._clock(), tenant, champion, challenger)
            self._verdicts[key] = verdict
            self._pair(verdict, +1)
            while len(self._verdicts) > REMEMBERED_VERDICTS:
                self._verdicts.popitem(last=False)  # its share of the totals stays

    def _pair(self, verdict: _Verdict, sign: int) -> None:
        """Add (+1) or take back (-1) a verdict's part of the paired totals; under the lock."""
        champion, challenger = verdict.champion, verdict.challenger
        if champion is None or challenger is None:
            return
        totals = self.agreement
        totals.judged += sign
        totals.champion_correct += sign * champion
        totals.challenger_correct += sign * challenger
        totals.judged_by_tenant[verdict.tenant] += sign

    def stats(self, role: Role) -> WindowStats:
        with self._lock:
            horizon = self._clock() - self.window_s
            _prune(self._calls[role], horizon)
            _prune(self._comparisons, horizon)
            calls = list(self._calls[role])
            comparisons = list(self._comparisons) if role is Role.CHALLENGER else []
            by_tenant = self._verdicts_since(horizon, role)
        latencies = np.array([c[1] for c in calls if not c[2]])
        return WindowStats(
            requests=len(calls),
            errors=sum(1 for c in calls if c[2]),
            p99_ms=float(np.percentile(latencies, 99)) if latencies.size else 0.0,
            compared=len(comparisons),
            disagreements=sum(1 for _, agreed, _ in comparisons if not agreed),
            compared_by_tenant=_by_tenant((tenant, not agreed) for _, agreed, tenant in comparisons),
            feedback=sum(v.n for v in by_tenant),
            feedback_correct=sum(v.hits for v in by_tenant),
            feedback_by_tenant=by_tenant,
        )

    def _verdicts_since(self, horizon: float, role: Role) -> tuple[TenantCounts, ...]:
        """Per tenant, the verdicts on ``role``'s answers first seen at or after ``horizon`` (n) and the
        correct ones (hits)."""
        scored = []
        for verdict in reversed(self._verdicts.values()):
            if verdict.at < horizon:
                break  # first seen first: everything before this one is older still
            right = verdict.score(role)
            if right is not None:
                scored.append((verdict.tenant, right))
        return _by_tenant(scored)


def _by_tenant(events: Iterable[tuple[str | None, bool]]) -> tuple[TenantCounts, ...]:
    """(tenant, hit) events counted per tenant, by name; events without a tenant are left out."""
    n: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for tenant, hit in events:
        if tenant is not None:
            n[tenant] += 1
            hits[tenant] += hit
    return tuple(TenantCounts(t, n[t], hits[t]) for t in sorted(n))


@dataclass(slots=True)
class _Verdict:
    """The latest verdict on one decision: whether each model that answered it was right (None: it did
    not answer), and when the first verdict on it came (its place in the window)."""

    at: float
    tenant: str
    champion: bool | None
    challenger: bool | None

    def score(self, role: Role) -> bool | None:
        return self.champion if role is Role.CHAMPION else self.challenger


def _prune(
    queue: deque[tuple[float, float, bool]] | deque[tuple[float, bool, str | None]], horizon: float
) -> None:
    while queue and queue[0][0] < horizon:
        queue.popleft()
