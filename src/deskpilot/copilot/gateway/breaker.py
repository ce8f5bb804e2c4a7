"""A circuit breaker per provider, so a provider that keeps failing is skipped without a network call.

Closed → open after ``failure_threshold`` consecutive failures (or a failure rate over a window);
open → half-open once ``cooldown_s`` has passed, letting exactly one probe through; the probe's success closes
it, its failure opens it again. Only failures that say something about the provider's health count: a
refusal (4xx) is our request's fault, so it neither trips nor heals the breaker. A probe that never reports
back (its caller was cancelled) is given up after another cooldown, so the breaker cannot stay half-open.

Not thread-safe: the gateway uses it from one event loop.
"""

from __future__ import annotations

import time
from collections import deque
from enum import StrEnum

from deskpilot.copilot.gateway.base import FailureKind
from deskpilot.copilot.gateway.config import BreakerConfig
from deskpilot.copilot.gateway.retry import Clock

HEALTH_FAILURES = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.MALFORMED,
        FailureKind.TRUNCATED,
    }
)
_MAX_WINDOW_OUTCOMES = 10_000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=_MAX_WINDOW_OUTCOMES)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.config.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now. In half-open state this takes the single probe slot."""
        now = self._clock()
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        self._state = BreakerState.HALF_OPEN
        if self._probe_since is not None and now - self._probe_since < max(self.config.cooldown_s, 1e-9):
            return False
        self._probe_since = now
        return True

    @property
    def probing(self) -> bool:
        """Whether the caller holding a permit is the half-open probe (and should not retry)."""
        return self._state is BreakerState.HALF_OPEN

    def record_success(self) -> None:
        self._outcomes.append((self._clock(), True))
        self._consecutive = 0
        self._state = BreakerState.CLOSED
        self._probe_since = None

    def record_failure(self, kind: FailureKind) -> None:
        if kind not in HEALTH_FAILURES:
            self.release()
            return
        now = self._clock()
        self._outcomes.append((now, False))
        self._consecutive += 1
        if self._state is BreakerState.HALF_OPEN or self._tripped(now):
            self._open(now)

    def release(self) -> None:
        """Give back a permit whose call said nothing about the provider's health (refused, cancelled,
        skipped for budget): a half-open breaker lets the next caller probe."""
        self._probe_since = None

    def _tripped(self, now: float) -> bool:
        if self._consecutive >= self.config.failure_threshold:
            return True
        rate = self.config.failure_rate
        if rate is None:
            return False
        horizon = now - self.config.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()
        calls = len(self._outcomes)
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return calls >= self.config.min_calls and failures / calls >= rate

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_since = None
        self._outcomes.clear()
