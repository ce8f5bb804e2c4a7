"""Token-bucket rate limits per tenant, driven by a fake clock so every number is computed by hand."""

from __future__ import annotations

import threading

import pytest

from deskpilot.errors import ConfigError
from deskpilot.service.ratelimit import Decision, TokenBucketLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_full_bucket_allows_the_burst_then_says_when_to_retry(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=3, clock=clock)
    assert [limiter.acquire("acme") for _ in range(3)] == [
        Decision(True, 0.0, 2),
        Decision(True, 0.0, 1),
        Decision(True, 0.0, 0),
    ]
    assert limiter.acquire("acme") == Decision(False, 1.0, 0)


def test_tokens_refill_at_the_rate(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=4, clock=clock)
    assert limiter.acquire("acme", cost=4).remaining == 0
    clock.now += 0.25  # 0.5 token
    decision = limiter.acquire("acme")
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(0.25)  # (1 - 0.5) / 2
    clock.now += 0.25  # 1 token
    assert limiter.acquire("acme") == Decision(True, 0.0, 0)
    clock.now += 100  # capped at the burst
    assert limiter.acquire("acme") == Decision(True, 0.0, 3)


def test_a_batch_costs_its_items_and_a_denial_consumes_nothing(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=5, clock=clock)
    assert limiter.acquire("acme", cost=4) == Decision(True, 0.0, 1)
    clock.now += 0.5  # 1 + 1 = 2 tokens
    denied = limiter.acquire("acme", cost=5)
    assert not denied.allowed
    assert denied.retry_after_s == pytest.approx(1.5)  # (5 - 2) / 2
    assert denied.remaining == 2
    assert limiter.acquire("acme", cost=2) == Decision(True, 0.0, 0)


def test_fractional_rates_give_exact_retry_after(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=0.1, burst=1, clock=clock)
    assert limiter.acquire("acme").allowed
    assert limiter.acquire("acme").retry_after_s == pytest.approx(10.0)
    clock.now += 4
    assert limiter.acquire("acme").retry_after_s == pytest.approx(6.0)
    clock.now += 6
    assert limiter.acquire("acme").allowed  # float refill must not fall a hair short


def test_tenants_have_separate_buckets_and_overrides(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, overrides={"big": (10.0, 20)}, clock=clock)
    assert limiter.acquire("acme", cost=2).allowed
    assert not limiter.acquire("acme").allowed
    assert limiter.acquire("globex", cost=2).allowed
    assert limiter.acquire("big", cost=20) == Decision(True, 0.0, 0)
    assert limiter.acquire("big", cost=5).retry_after_s == pytest.approx(0.5)
    assert limiter.limits_for("big") == (10.0, 20)
    assert limiter.limits_for("anyone") == (1.0, 2)


def test_a_cost_above_the_burst_is_flagged_not_queued(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=10, clock=clock)
    decision = limiter.acquire("acme", cost=11)
    assert decision == Decision(False, 0.0, 10, exceeds_burst=True)
    assert limiter.acquire("acme", cost=10).allowed  # the refused batch took nothing


def test_rate_zero_or_below_means_unlimited(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=0, burst=0, overrides={"capped": (1.0, 1)}, clock=clock)
    assert all(limiter.acquire("acme", cost=1000).allowed for _ in range(100))
    assert len(limiter) == 0
    assert limiter.acquire("capped").allowed
    assert not limiter.acquire("capped").allowed
    unlimited_override = TokenBucketLimiter(1.0, 1, overrides={"vip": (-1.0, 0)}, clock=clock)
    assert all(unlimited_override.acquire("vip").allowed for _ in range(10))


def test_zero_cost_is_free_and_negative_cost_is_a_bug(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=clock)
    assert limiter.acquire("acme", cost=0) == Decision(True, 0.0, 1)
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire("acme", cost=-1)


def test_idle_full_buckets_are_evicted_and_drained_ones_are_kept(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=10, clock=clock, sweep_interval_s=60)
    for n in range(1000):
        limiter.acquire(f"tenant-{n}")
    assert len(limiter) == 1000
    limiter.acquire("hog", cost=10)
    clock.now += 5  # before the sweep interval: nothing is swept yet
    limiter.acquire("tenant-0")
    assert len(limiter) == 1001
    clock.now += 56  # every tenant-N bucket has refilled; "hog" would have too
    limiter.acquire("hog", cost=10)  # sweeps first, then drains "hog" again
    assert len(limiter) == 1
    clock.now += 60
    limiter.acquire("fresh")
    assert len(limiter) == 1  # "hog" refilled and was swept; "fresh" is new
    assert limiter.acquire("hog", cost=10).allowed  # an evicted bucket behaves as a full one


def test_a_partly_drained_bucket_survives_the_sweep(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=0.01, burst=10, clock=clock, sweep_interval_s=60)
    limiter.acquire("slow", cost=10)
    clock.now += 61  # 0.61 tokens back: far from full
    limiter.acquire("other")
    assert len(limiter) == 2
    assert limiter.acquire("slow").retry_after_s == pytest.approx((1 - 0.61) / 0.01)


def test_concurrent_acquires_never_overspend(clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=0.001, burst=50, clock=clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(100):
            decision = limiter.acquire("acme")
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 50
    assert len(allowed) == 800


@pytest.mark.parametrize(
    ("rate", "burst", "overrides"),
    [(1.0, 0, None), (float("nan"), 5, None), (float("inf"), 5, None), (1.0, 5, {"x": (2.0, 0)})],
)
def test_impossible_limits_are_refused(
    rate: float, burst: int, overrides: dict[str, tuple[float, int]] | None
) -> None:
    with pytest.raises(ConfigError):
        TokenBucketLimiter(rate, burst, overrides)


def test_each_worker_enforces_its_share_of_every_tenant_limit() -> None:
    from deskpilot.config import Settings
    from deskpilot.workflows.serving import worker_share_limiter

    settings = Settings(
        rate_limit_per_s=90.0, rate_limit_burst=10, rate_limit_overrides="big=300/7", workers=3
    )
    limiter = worker_share_limiter(settings)
    assert limiter.limits_for("anyone") == (30.0, 4)  # the burst rounds up: 10/3 -> 4
    assert limiter.limits_for("big") == (100.0, 3)
    single = worker_share_limiter(Settings(rate_limit_per_s=90.0, rate_limit_burst=10))
    assert single.limits_for("anyone") == (90.0, 10)
