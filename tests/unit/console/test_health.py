"""Service health from Prometheus exposition text: parsing, rates, bucket percentiles, the sampler's ring."""

from __future__ import annotations

import asyncio
import math

import pytest

from deskpilot.console import health
from deskpilot.service.metrics import ServiceMetrics

BOUNDS = ("0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "+Inf")


def histogram(route: str, status: str, cumulative: list[int], method: str = "POST") -> str:
    """The sample lines of one label set of the request histogram, cumulative counts per bound."""
    labels = f'method="{method}",route="{route}",status="{status}"'
    lines = [
        f'deskpilot_http_request_duration_seconds_bucket{{le="{le}",{labels}}} {n}'
        for le, n in zip(BOUNDS, cumulative, strict=True)
    ]
    lines.append(f"deskpilot_http_request_duration_seconds_count{{{labels}}} {cumulative[-1]}")
    lines.append(f"deskpilot_http_request_duration_seconds_sum{{{labels}}} 0.5")
    return "\n".join(lines)


def exposition(
    *,
    ok: list[int],
    failed: list[int] | None = None,
    probes: int = 0,
    decisions: int = 0,
    fallbacks: int = 0,
    queue: float = 0.0,
    dropped: int = 0,
) -> str:
    parts = [
        "# HELP deskpilot_http_request_duration_seconds HTTP request latency by route and status.",
        "# TYPE deskpilot_http_request_duration_seconds histogram",
        histogram("/v1/triage", "200", ok),
    ]
    if failed is not None:
        parts.append(histogram("/v1/triage", "503", failed))
    parts.append(histogram("/metrics", "200", [probes] * len(BOUNDS), method="GET"))
    parts.append(histogram("/console/ops", "500", [probes] * len(BOUNDS), method="GET"))
    parts += [
        "# TYPE deskpilot_predictions_total counter",
        f'deskpilot_predictions_total{{intent="card",route="auto"}} {decisions // 2}',
        f'deskpilot_predictions_total{{intent="refund",route="human"}} {decisions - decisions // 2}',
        "# TYPE deskpilot_fallback_total counter",
        f'deskpilot_fallback_total{{reason="timeout"}} {fallbacks}',
        'deskpilot_fallback_total{reason="error"} 0',
        "# TYPE deskpilot_store_queue_depth gauge",
        f"deskpilot_store_queue_depth {queue}",
        "# TYPE deskpilot_store_dropped_total counter",
        f"deskpilot_store_dropped_total {dropped}",
        "# TYPE deskpilot_rollbacks_total counter",
        'deskpilot_rollbacks_total{rule="error_rate"} 1',
    ]
    return "\n".join(parts) + "\n"


def cumulative(per_bucket: list[int]) -> list[int]:
    out, total = [], 0
    for n in per_bucket:
        total += n
        out.append(total)
    return out


def test_parse_sums_api_routes_and_leaves_out_metrics_probes_and_console() -> None:
    text = exposition(
        ok=cumulative([0, 0, 10] + [0] * 10),
        failed=cumulative([0] * 6 + [2] + [0] * 6),
        probes=50,
        decisions=12,
        fallbacks=3,
        queue=4,
        dropped=1,
    )
    snap = health.parse_snapshot(text, at=100.0)
    assert snap.requests == 12
    assert snap.errors == 2  # the console's 500s are not the API's
    assert dict(snap.buckets)[math.inf] == 12
    assert dict(snap.buckets)[0.005] == 10
    assert snap.counter("decisions") == 12
    assert snap.counter("fallbacks") == 3
    assert snap.counter("dropped") == 1
    assert snap.counter("rollbacks") == 1
    assert snap.queue_depth == 4


def test_parse_reads_the_services_own_registry() -> None:
    metrics = ServiceMetrics()
    metrics.request_latency.labels("POST", "/v1/triage", "200").observe(0.004)
    metrics.request_latency.labels("GET", "/healthz", "200").observe(0.004)
    metrics.predictions.labels("card", "auto").inc(3)
    metrics.fallbacks.labels("timeout").inc()
    metrics.store_queue_depth.set(2)
    snap = health.parse_snapshot(metrics.render().decode(), at=0.0)
    assert (snap.requests, snap.counter("decisions"), snap.counter("fallbacks")) == (1, 3, 1)
    assert snap.queue_depth == 2


def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.001, 0.0), (0.002, 10.0), (0.005, 10.0), (math.inf, 10.0)]
    p50 = health.quantile(0.5, buckets)
    assert p50 is not None
    assert p50.estimate == pytest.approx(0.0015)
    assert (p50.lower, p50.upper) == (0.001, 0.002)
    assert p50.describe() == "≈ 1.5 ms (≤ 2 ms)"
    assert health.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert health.quantile(0.5, []) is None


def test_a_rank_beyond_the_largest_bound_says_only_greater_than() -> None:
    buckets = [(1.0, 1.0), (5.0, 1.0), (math.inf, 100.0)]
    p99 = health.quantile(0.99, buckets)
    assert p99 is not None
    assert p99.beyond_buckets
    assert p99.describe() == "> 5 s"


def test_between_two_snapshots_gives_rates_and_percentiles_of_that_span() -> None:
    first = health.parse_snapshot(exposition(ok=cumulative([0, 0, 10] + [0] * 10), decisions=10), at=0.0)
    # 100 more requests in 50 s: 98 fast (≤ 5 ms), 2 slow (≤ 1 s), 1 of them a 503; 10 fallbacks of 100
    later_ok = cumulative([0, 0, 10 + 97] + [0] * 6 + [1] + [0] * 3)
    later_failed = cumulative([0, 0, 1] + [0] * 10)
    second = health.parse_snapshot(
        exposition(ok=later_ok, failed=later_failed, decisions=110, fallbacks=10, queue=7), at=50.0
    )
    stats = health.between(first, second)
    assert stats.seconds == 50
    assert not stats.since_start
    assert stats.requests == 99
    assert stats.request_rate == pytest.approx(99 / 50)
    assert stats.error_rate == pytest.approx(1 / 99)
    assert stats.fallback_rate == pytest.approx(10 / 100)
    assert stats.queue_depth == 7
    assert stats.p50 is not None
    assert stats.p50.upper == 0.005
    assert stats.p99 is not None
    assert stats.p99.upper == 1.0  # the one slow request is the 99th percentile of 99


def test_since_start_has_no_rate_but_has_ratios() -> None:
    snap = health.parse_snapshot(
        exposition(ok=cumulative([0, 0, 4] + [0] * 10), decisions=4, fallbacks=1), 9.0
    )
    stats = health.between(None, snap)
    assert stats.since_start
    assert stats.request_rate is None
    assert stats.fallback_rate == 0.25
    assert stats.p50 is not None


def test_a_counter_that_went_down_restarted_from_zero() -> None:
    assert health.increase(10, 15) == 5
    assert health.increase(10, 3) == 3
    first = health.parse_snapshot(exposition(ok=cumulative([0, 0, 50] + [0] * 10)), at=0.0)
    second = health.parse_snapshot(exposition(ok=cumulative([0, 0, 5] + [0] * 10)), at=10.0)
    stats = health.between(first, second)
    assert stats.requests == 5
    assert stats.p50 is not None


def test_no_traffic_has_no_percentiles_or_rates_of_ratios() -> None:
    snap = health.parse_snapshot(exposition(ok=[0] * len(BOUNDS)), at=0.0)
    stats = health.between(snap, health.parse_snapshot(exposition(ok=[0] * len(BOUNDS)), at=10.0))
    assert stats.request_rate == 0
    assert (stats.p50, stats.p99, stats.error_rate, stats.fallback_rate) == (None, None, None, None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampler_reads_fresh_but_keeps_a_bounded_ring_every_interval() -> None:
    clock, total = FakeClock(), [0]

    def read() -> bytes:
        total[0] += 10
        return exposition(ok=cumulative([0, 0, total[0]] + [0] * 10)).encode()

    sampler = health.HealthSampler(read, every_s=10, window_s=60, keep_s=100, clock=clock)
    first = sampler.report()
    assert first.window.since_start
    assert first.window.requests == 10
    assert first.intervals == []
    clock.now += 5
    soon = sampler.report()  # a fresh reading, over the 5 s since the first
    assert len(sampler.snapshots()) == 1
    assert (soon.window.seconds, soon.window.requests) == (5, 10)
    assert soon.window.request_rate == pytest.approx(2.0)
    for _ in range(30):
        clock.now += 10
        sampler.sample()
    assert len(sampler.snapshots()) == 11  # keep_s / every_s + 1
    clock.now += 10
    report = sampler.report()
    assert report.window.seconds == 60
    assert report.window.request_rate == pytest.approx(1.0)
    assert len(report.intervals) == 10
    assert report.series(lambda s: s.request_rate) == [pytest.approx(1.0)] * 10


def test_sampler_after_a_long_pause_uses_the_span_it_has() -> None:
    clock = FakeClock()
    sampler = health.HealthSampler(
        lambda: exposition(ok=[0] * len(BOUNDS)), every_s=10, window_s=60, clock=clock
    )
    sampler.sample()
    clock.now += 3600
    report = sampler.report()
    assert report.window.seconds == 3600
    assert not report.window.since_start


def test_background_sampling_starts_and_stops() -> None:
    calls: list[int] = []

    def read() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("a scrape failed")
        return exposition(ok=[0] * len(BOUNDS))

    async def run() -> None:
        sampler = health.HealthSampler(read, every_s=0.01)
        sampler.start()
        await asyncio.sleep(0.2)
        await sampler.stop()
        await sampler.stop()  # twice is harmless

    asyncio.run(run())
    assert len(calls) >= 3  # a failed read did not end the task
