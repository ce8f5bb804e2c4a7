"""The circuit breaker: opens on consecutive failures or a failure rate, one probe when half-open."""

from __future__ import annotations

from deskpilot.copilot.gateway.base import FailureKind
from deskpilot.copilot.gateway.breaker import BreakerState, CircuitBreaker
from deskpilot.copilot.gateway.config import BreakerConfig
from tests.unit.copilot.gateway.clocks import FakeClock


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=3, cooldown_s=10), clock=clock)
    breaker.record_failure(FailureKind.TIMEOUT)
    breaker.record_failure(FailureKind.SERVER_ERROR)
    breaker.record_success()
    breaker.record_failure(FailureKind.CONNECTION)
    breaker.record_failure(FailureKind.CONNECTION)
    assert breaker.allow()
    breaker.record_failure(FailureKind.MALFORMED)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_refusals_neither_trip_nor_heal(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2), clock=clock)
    breaker.record_failure(FailureKind.TIMEOUT)
    for _ in range(5):
        breaker.record_failure(FailureKind.REFUSED)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(FailureKind.TIMEOUT)
    assert breaker.state is BreakerState.OPEN


def test_half_open_lets_one_probe_through_and_its_success_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_s=10), clock=clock)
    breaker.record_failure(FailureKind.TIMEOUT)
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert breaker.probing
    assert not breaker.allow(), "only one probe at a time"
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_a_failed_probe_opens_again_for_a_full_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_s=10), clock=clock)
    breaker.record_failure(FailureKind.TIMEOUT)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure(FailureKind.SERVER_ERROR)
    assert breaker.state is BreakerState.OPEN
    clock.advance(5)
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.allow()


def test_a_released_or_abandoned_probe_lets_another_caller_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_s=10), clock=clock)
    breaker.record_failure(FailureKind.TIMEOUT)
    clock.advance(10)
    assert breaker.allow()
    breaker.release()  # e.g. skipped for budget
    assert breaker.allow()
    clock.advance(10)  # that probe never reported back
    assert breaker.allow()


def test_failure_rate_in_a_window_opens(clock: FakeClock) -> None:
    config = BreakerConfig(failure_threshold=100, failure_rate=0.5, window_s=60, min_calls=4)
    breaker = CircuitBreaker(config, clock=clock)
    for ok in (True, False, True):
        breaker.record_success() if ok else breaker.record_failure(FailureKind.TIMEOUT)
    assert breaker.state is BreakerState.CLOSED, "fewer than min_calls"
    breaker.record_failure(FailureKind.TIMEOUT)
    assert breaker.state is BreakerState.OPEN


def test_old_outcomes_leave_the_window(clock: FakeClock) -> None:
    config = BreakerConfig(failure_threshold=100, failure_rate=0.5, window_s=60, min_calls=4)
    breaker = CircuitBreaker(config, clock=clock)
    for _ in range(3):
        breaker.record_failure(FailureKind.TIMEOUT)
        breaker.record_success()
    clock.advance(61)
    breaker.record_success()
    breaker.record_success()
    breaker.record_success()
    breaker.record_failure(FailureKind.TIMEOUT)
    assert breaker.state is BreakerState.CLOSED, "1 failure in 4 recent calls"
