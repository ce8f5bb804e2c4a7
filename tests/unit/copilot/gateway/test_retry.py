"""Retries: only retryable kinds, capped full-jitter back-off, Retry-After honoured exactly or given up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from deskpilot.copilot.gateway.base import FailureKind, ProviderError
from deskpilot.copilot.gateway.retry import Retrier, RetryPolicy, parse_retry_after
from tests.unit.copilot.gateway.clocks import FakeClock

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=7), usegmt=True), now=NOW) == 7.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=7), usegmt=True), now=NOW) == 0.0
    for bad in (None, "", "soon", "inf", "nan"):
        assert parse_retry_after(bad) is None


def test_back_off_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base_s=0.5, backoff_max_s=3.0)
    error = ProviderError(FailureKind.SERVER_ERROR, "503")
    assert [policy.delay(n, error, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(3, error, lambda: 0.0) == 0.0
    assert policy.delay(3, error, lambda: 0.25) == 0.5


@pytest.mark.parametrize("kind", [FailureKind.REFUSED, FailureKind.MALFORMED, FailureKind.TRUNCATED])
def test_non_retryable_failures_are_not_retried(kind: FailureKind) -> None:
    assert RetryPolicy(max_attempts=5).delay(1, ProviderError(kind, "x")) is None


def test_tries_are_bounded_and_retry_after_is_honoured_or_given_up() -> None:
    policy = RetryPolicy(max_attempts=3, max_retry_after_s=10.0)
    assert policy.delay(3, ProviderError(FailureKind.TIMEOUT, "t")) is None
    assert policy.delay(1, ProviderError(FailureKind.RATE_LIMITED, "429", retry_after_s=4.0)) == 4.0
    assert policy.delay(1, ProviderError(FailureKind.RATE_LIMITED, "429", retry_after_s=11.0)) is None


class Flaky:
    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(retrier: Retrier, call: Flaky, **kwargs: object) -> str:
    return asyncio.run(retrier.run(call, **kwargs))  # type: ignore[arg-type]


def test_retries_transient_failures_then_succeeds(clock: FakeClock) -> None:
    retrier = Retrier(RetryPolicy(3, 1.0, 8.0), clock=clock, sleep=clock.sleep, rand=lambda: 1.0)
    call = Flaky(
        ProviderError(FailureKind.CONNECTION, "reset"), ProviderError(FailureKind.SERVER_ERROR, "500")
    )
    seen: list[tuple[int, FailureKind]] = []
    assert run(retrier, call, on_failure=lambda n, e, _: seen.append((n, e.kind))) == "ok"
    assert call.calls == 3
    assert clock.sleeps == [1.0, 2.0]
    assert seen == [(1, FailureKind.CONNECTION), (2, FailureKind.SERVER_ERROR)]


def test_gives_up_when_retry_after_passes_the_deadline(clock: FakeClock) -> None:
    retrier = Retrier(RetryPolicy(5, max_retry_after_s=60.0), clock=clock, sleep=clock.sleep)
    call = Flaky(ProviderError(FailureKind.RATE_LIMITED, "429", retry_after_s=20.0))
    with pytest.raises(ProviderError) as info:
        run(retrier, call, deadline=clock.now + 10.0)
    assert info.value.kind is FailureKind.RATE_LIMITED
    assert call.calls == 1
    assert clock.sleeps == [], "no sleep that would end past the deadline"


def test_the_breaker_can_stop_further_tries(clock: FakeClock) -> None:
    retrier = Retrier(RetryPolicy(5), clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    call = Flaky(*[ProviderError(FailureKind.TIMEOUT, "t")] * 5)
    with pytest.raises(ProviderError):
        run(retrier, call, may_retry=lambda: False)
    assert call.calls == 1


def test_max_attempts_override_limits_a_probe_to_one_try(clock: FakeClock) -> None:
    retrier = Retrier(RetryPolicy(5), clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    call = Flaky(*[ProviderError(FailureKind.TIMEOUT, "t")] * 5)
    with pytest.raises(ProviderError):
        run(retrier, call, max_attempts=1)
    assert call.calls == 1


def test_an_attempt_is_cut_at_the_deadline() -> None:
    async def hang() -> str:
        await asyncio.sleep(10)
        return "late"

    async def scenario() -> ProviderError:
        loop = asyncio.get_running_loop()
        retrier = Retrier(RetryPolicy(1), clock=loop.time)
        with pytest.raises(ProviderError) as info:
            await retrier.run(hang, deadline=loop.time() + 0.05)
        return info.value

    error = asyncio.run(scenario())
    assert error.kind is FailureKind.TIMEOUT


def test_a_passed_deadline_makes_no_call(clock: FakeClock) -> None:
    call = Flaky()
    with pytest.raises(ProviderError, match="deadline"):
        run(Retrier(RetryPolicy(3), clock=clock), call, deadline=clock.now - 1)
    assert call.calls == 0
