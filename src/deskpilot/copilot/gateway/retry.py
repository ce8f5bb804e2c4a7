"""Retrying one provider: only on retryable failures, with capped full-jitter back-off, honouring Retry-After.

A Retry-After is honoured exactly or not at all: when it is longer than ``max_retry_after_s`` or than what is
left of the deadline, waiting would either hammer a provider that asked for patience or blow the caller's
deadline, so the provider is given up and the gateway moves on to the next one. Clock, sleep and randomness
are injected so tests run without waiting.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from deskpilot.copilot.gateway.base import FailureKind, ProviderError

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Random = Callable[[], float]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, error: ProviderError, rand: Random = random.random) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after try ``attempt`` failed with ``error``, or None to
        give up (not retryable, out of tries, or a Retry-After longer than we are willing to wait)."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        retry_after: float | None = error.retry_after_s
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return rand() * ceiling


FailureHook = Callable[[int, ProviderError, float], None]


class Retrier:
    """Runs one call under a :class:`RetryPolicy` and an absolute deadline on ``clock``."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Random = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        max_attempts: int | None = None,
        on_failure: FailureHook | None = None,
        may_retry: Callable[[], bool] | None = None,
    ) -> T:
        """The call's result, or the last :class:`ProviderError`. ``on_failure(attempt, error, elapsed_s)``
        sees every failed try; ``may_retry`` (the circuit breaker) can stop further tries."""
        policy = self.policy
        if max_attempts is not None:
            policy = RetryPolicy(
                min(max_attempts, policy.max_attempts),
                policy.backoff_base_s,
                policy.backoff_max_s,
                policy.max_retry_after_s,
            )
        attempt = 0
        while True:
            attempt += 1
            started = self._clock()
            try:
                return await self._attempt(call, None if deadline is None else deadline - started)
            except ProviderError as exc:
                error = exc
            if on_failure is not None:
                on_failure(attempt, error, self._clock() - started)
            wait = policy.delay(attempt, error, self._rand)
            if wait is None:
                raise error
            if deadline is not None and self._clock() + wait >= deadline:
                raise error
            if may_retry is not None and not may_retry():
                raise error
            await self._sleep(wait)

    @staticmethod
    async def _attempt(call: Callable[[], Awaitable[T]], remaining: float | None) -> T:
        if remaining is not None and remaining <= 0:
            raise ProviderError(FailureKind.TIMEOUT, "the deadline passed before the call")
        try:
            async with asyncio.timeout(remaining):
                return await call()
        except TimeoutError:
            raise ProviderError(FailureKind.TIMEOUT, "no answer within the deadline") from None
