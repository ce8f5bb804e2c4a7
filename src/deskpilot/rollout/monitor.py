"""What the service saw of champion and challenger: sliding windows for the rules, totals for the report.

Thread-safe: requests record from the event loop and the model threads, the rule check reads from its own
task. Windows keep raw events for ``window_s`` seconds (bounded by traffic in that time).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from deskpilot.domain import Role
from deskpilot.rollout.rules import WindowStats

WATCHED = (Role.CHAMPION, Role.CHALLENGER)  # the fallback is not under rollout


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
    judged: int = 0  # requests with feedback that both models answered
    champion_correct: int = 0
    challenger_correct: int = 0

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
        self._comparisons: deque[tuple[float, bool]] = deque()
        self._feedback: dict[Role, deque[tuple[float, bool]]] = {role: deque() for role in WATCHED}
        self.agreement = Agreement()

    def reset(self) -> None:
        """A new challenger starts with empty windows and totals."""
        with self._lock:
            for calls in self._calls.values():
                calls.clear()
            for verdicts in self._feedback.values():
                verdicts.clear()
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
    ) -> None:
        agreed = champion_intent == challenger_intent
        with self._lock:
            self._comparisons.append((self._clock(), agreed))
            totals = self.agreement
            totals.compared += 1
            totals.agreed += agreed
            totals.confidence_shift_sum += confidence_shift
            totals.auto_to_human += champion_auto and not challenger_auto
            totals.human_to_auto += challenger_auto and not champion_auto
            totals.by_intent[champion_intent] += 1
            totals.agreed_by_intent[champion_intent] += agreed

    def observe_feedback(self, role: Role, *, correct: bool) -> None:
        with self._lock:
            self._feedback[role].append((self._clock(), correct))

    def observe_paired_feedback(self, *, champion_correct: bool, challenger_correct: bool) -> None:
        """A verdict on a request both models answered (shadow): accuracy of each on the same requests."""
        with self._lock:
            totals = self.agreement
            totals.judged += 1
            totals.champion_correct += champion_correct
            totals.challenger_correct += challenger_correct

    def stats(self, role: Role) -> WindowStats:
        with self._lock:
            horizon = self._clock() - self.window_s
            _prune(self._calls[role], horizon)
            _prune(self._comparisons, horizon)
            _prune(self._feedback[role], horizon)
            calls = list(self._calls[role])
            comparisons = list(self._comparisons) if role is Role.CHALLENGER else []
            feedback = list(self._feedback[role])
        latencies = np.array([c[1] for c in calls if not c[2]])
        return WindowStats(
            requests=len(calls),
            errors=sum(1 for c in calls if c[2]),
            p99_ms=float(np.percentile(latencies, 99)) if latencies.size else 0.0,
            compared=len(comparisons),
            disagreements=sum(1 for _, agreed in comparisons if not agreed),
            feedback=len(feedback),
            feedback_correct=sum(1 for _, correct in feedback if correct),
        )


def _prune(queue: deque[tuple[float, float, bool]] | deque[tuple[float, bool]], horizon: float) -> None:
    while queue and queue[0][0] < horizon:
        queue.popleft()
