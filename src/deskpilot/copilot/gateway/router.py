"""The gateway: a cache before a fallback chain of providers, each behind a breaker, a budget and retries.

For each request: a cached answer if there is one; else, provider by provider, skip it if its breaker is open
(``CIRCUIT_OPEN``) or the tenant's budget cannot cover the call's worst case (``BUDGET``), otherwise call it
with retries on transient failures, settle the budget with what was really used, and return the first complete
answer. Non-retryable failures (refused, malformed, truncated) move straight on to the next provider. When
every provider has failed, :class:`GatewayExhausted` carries every try and skip, so the caller can record them
and fall back to its no-LLM drafter. The gateway never returns a partial answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from deskpilot.copilot.gateway.base import (
    ChatProvider,
    ChatRequest,
    Completion,
    FailureKind,
    ProviderError,
    Usage,
)
from deskpilot.copilot.gateway.breaker import CircuitBreaker
from deskpilot.copilot.gateway.budget import Budgets, Reservation
from deskpilot.copilot.gateway.cache import ResponseCache, cache_key
from deskpilot.copilot.gateway.retry import Clock, Random, Retrier, RetryPolicy, Sleep
from deskpilot.copilot.gateway.stats import GatewayObserver, GatewayStats
from deskpilot.errors import DeskPilotError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One link of the fallback chain: a provider and the policy it is called under. The prices are the
    provider's, used to price the budget reservation before the call."""

    provider: ChatProvider
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    deadline_s: float | None = None
    prompt_price_per_1k: float = 0.0
    completion_price_per_1k: float = 0.0

    @property
    def name(self) -> str:
        return self.provider.name


@dataclass(frozen=True)
class Attempt:
    """One try on one provider, or a skip. ``attempt`` counts tries on that provider from 1; a skip that made
    no call (``BUDGET``, ``CIRCUIT_OPEN``, the gateway deadline) has 0."""

    provider: str
    kind: FailureKind
    message: str
    attempt: int
    elapsed_s: float


class GatewayExhausted(DeskPilotError):  # noqa: N818 (the name the copilot layer uses)
    """No provider gave a complete answer; ``attempts`` says why, try by try."""

    code = "llm_unavailable"
    http_status = 503

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        summary = ", ".join(f"{a.provider} {a.kind.value}" for a in self.attempts) or "no providers"
        super().__init__(
            f"no LLM provider gave a complete answer ({summary})",
            details={"attempts": [{"provider": a.provider, "kind": a.kind.value} for a in self.attempts]},
        )


class Gateway:
    def __init__(
        self,
        routes: Sequence[Route],
        *,
        budgets: Budgets | None = None,
        cache: ResponseCache | None = None,
        observers: Sequence[GatewayObserver] = (),
        deadline_s: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Random = random.random,
    ) -> None:
        if not routes:
            raise ValueError("a gateway needs at least one route")
        self.routes = tuple(routes)
        self.budgets = budgets
        self.cache = cache
        self.stats = GatewayStats()
        self._observers: tuple[GatewayObserver, ...] = (self.stats, *observers)
        self.deadline_s = deadline_s
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every provider's client, even when one of them fails to close."""
        results = await asyncio.gather(*(r.provider.aclose() for r in self.routes), return_exceptions=True)
        for route, result in zip(self.routes, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("closing an LLM provider failed", extra={"provider": route.name})

    async def complete(self, request: ChatRequest) -> Completion:
        """The first complete answer along the chain; :class:`GatewayExhausted` when there is none."""
        for observer in self._observers:
            observer.on_request()
        hit = self._cached(request)
        if hit is not None:
            return hit
        deadline = None if self.deadline_s is None else self._clock() + self.deadline_s
        attempts: list[Attempt] = []
        for index, route in enumerate(self.routes):
            completion = await self._try_route(route, request, deadline, attempts)
            if completion is not None:
                if self.cache is not None:
                    self.cache.put(cache_key(route.name, route.provider.model, request), completion)
                return completion
            if index + 1 < len(self.routes):
                for observer in self._observers:
                    observer.on_fallback(route.name)
        for observer in self._observers:
            observer.on_exhausted()
        logger.warning(
            "every LLM provider failed",
            extra={"tenant": request.tenant, "attempts": [(a.provider, a.kind.value) for a in attempts]},
        )
        raise GatewayExhausted(attempts)

    def _cached(self, request: ChatRequest) -> Completion | None:
        if self.cache is None:
            return None
        for route in self.routes:
            hit = self.cache.get(cache_key(route.name, route.provider.model, request))
            if hit is not None:
                for observer in self._observers:
                    observer.on_cache_hit(route.name)
                return hit
        return None

    async def _try_route(
        self, route: Route, request: ChatRequest, deadline: float | None, attempts: list[Attempt]
    ) -> Completion | None:
        start = self._clock()
        if deadline is not None and start >= deadline:
            self._skip(
                route, FailureKind.TIMEOUT, "the gateway deadline passed before this provider", attempts
            )
            return None
        if not route.breaker.allow():
            self._skip(
                route, FailureKind.CIRCUIT_OPEN, "circuit open: the provider is cooling down", attempts
            )
            return None
        reservation: Reservation | None = None
        if self.budgets is not None:
            try:
                reservation = await self.budgets.reserve(
                    request,
                    prompt_per_1k=route.prompt_price_per_1k,
                    completion_per_1k=route.completion_price_per_1k,
                )
            except BaseException:
                route.breaker.release()
                raise
            if reservation is None:
                route.breaker.release()
                self._skip(route, FailureKind.BUDGET, "the tenant's budget cannot cover this call", attempts)
                return None
        spent: list[Usage] = []

        def on_failure(attempt: int, error: ProviderError, elapsed_s: float) -> None:
            attempts.append(Attempt(route.name, error.kind, str(error), attempt, elapsed_s))
            route.breaker.record_failure(error.kind)
            if error.usage is not None:
                spent.append(error.usage)
            for observer in self._observers:
                observer.on_failure(route.name, error.kind)
            logger.info(
                "LLM call failed",
                extra={"provider": route.name, "kind": error.kind.value, "attempt": attempt},
            )

        async def call() -> Completion:
            for observer in self._observers:
                observer.on_call(route.name)
            return await route.provider.complete(request)

        route_deadline = None if route.deadline_s is None else start + route.deadline_s
        if deadline is not None:
            route_deadline = deadline if route_deadline is None else min(deadline, route_deadline)
        retrier = Retrier(route.retry, clock=self._clock, sleep=self._sleep, rand=self._rand)
        completion: Completion | None = None
        try:
            completion = await retrier.run(
                call,
                deadline=route_deadline,
                max_attempts=1 if route.breaker.probing else None,
                on_failure=on_failure,
                may_retry=route.breaker.allow,
            )
        except ProviderError:
            pass
        except BaseException:  # cancelled, or a provider bug: give back the probe and the reservation
            route.breaker.release()
            if self.budgets is not None and reservation is not None:
                self.budgets.settle_now(reservation, _total(spent))
            raise
        if completion is not None:
            route.breaker.record_success()
            spent.append(Usage(completion.prompt_tokens, completion.completion_tokens, completion.cost_usd))
            for observer in self._observers:
                observer.on_success(route.name, completion, self._clock() - start)
        if self.budgets is not None and reservation is not None:
            await self.budgets.settle(reservation, _total(spent))
        return completion

    def _skip(self, route: Route, kind: FailureKind, message: str, attempts: list[Attempt]) -> None:
        attempts.append(Attempt(route.name, kind, f"{route.name}: {message}", 0, 0.0))
        for observer in self._observers:
            observer.on_failure(route.name, kind)


def _total(usages: Sequence[Usage]) -> Usage | None:
    if not usages:
        return None
    return Usage(
        sum(u.prompt_tokens for u in usages),
        sum(u.completion_tokens for u in usages),
        sum(u.cost_usd for u in usages),
        any(u.estimated for u in usages),
    )
