"""What the gateway tells the outside: an observer interface, and plain counters that implement it.

The gateway imports no metrics library; the application wires a :class:`GatewayObserver` to Prometheus (or
reads :class:`GatewayStats`). Events carry provider names and failure kinds, never prompt text.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from deskpilot.copilot.gateway.base import Completion, FailureKind


class GatewayObserver(Protocol):
    def on_request(self) -> None:
        """A :meth:`Gateway.complete` began."""

    def on_cache_hit(self, provider: str) -> None: ...

    def on_call(self, provider: str) -> None:
        """One HTTP call (one try) is about to go out."""

    def on_success(self, provider: str, completion: Completion, elapsed_s: float) -> None: ...

    def on_failure(self, provider: str, kind: FailureKind) -> None:
        """One try failed, or the provider was skipped (``BUDGET``, ``CIRCUIT_OPEN``)."""

    def on_fallback(self, provider: str) -> None:
        """``provider`` is given up for this request; the next one in the chain is tried."""

    def on_exhausted(self) -> None:
        """Every provider failed: the caller falls back to its no-LLM drafter."""


class GatewayStats:
    """Counters since start; cheap enough to keep always."""

    def __init__(self) -> None:
        self.requests = 0
        self.cache_hits = 0
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.failures: Counter[tuple[str, FailureKind]] = Counter()
        self.fallbacks = 0
        self.exhausted = 0
        self.tokens: Counter[str] = Counter()
        self.cost_usd: dict[str, float] = {}

    def failures_by_kind(self) -> Counter[FailureKind]:
        by_kind: Counter[FailureKind] = Counter()
        for (_, kind), n in self.failures.items():
            by_kind[kind] += n
        return by_kind

    def on_request(self) -> None:
        self.requests += 1

    def on_cache_hit(self, provider: str) -> None:
        self.cache_hits += 1

    def on_call(self, provider: str) -> None:
        self.calls[provider] += 1

    def on_success(self, provider: str, completion: Completion, elapsed_s: float) -> None:
        self.successes[provider] += 1
        self.tokens[provider] += completion.total_tokens
        self.cost_usd[provider] = self.cost_usd.get(provider, 0.0) + completion.cost_usd

    def on_failure(self, provider: str, kind: FailureKind) -> None:
        self.failures[provider, kind] += 1

    def on_fallback(self, provider: str) -> None:
        self.fallbacks += 1

    def on_exhausted(self) -> None:
        self.exhausted += 1
