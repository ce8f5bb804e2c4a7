"""Service health for the operator console, from the server's own Prometheus metrics.

The console reads the same exposition text ``/metrics`` serves (summed over every worker in multiprocess
mode), keeps a bounded ring of distilled snapshots, and derives rates and latencies from the differences
between two of them, as Prometheus' ``rate`` and ``histogram_quantile`` would: counters only grow, so a
value below the previous one means the counter restarted and counts from zero. Percentiles come from
histogram buckets: the estimate is interpolated linearly inside the bucket the rank falls in, so what is
certain is only the bucket's bound (``≤ 20 ms``), and a rank in the last bucket is only ``> 5 s``.

Requests to ``/metrics``, the probes and the console itself are left out of request rate, latency and
errors: a scraper or an open console page would otherwise dilute what the API's callers see.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

REQUEST_METRIC = "deskpilot_http_request_duration_seconds"
EXCLUDED_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
EXCLUDED_PREFIXES = ("/console",)
COUNTERS = {  # snapshot field -> sample name (every label summed)
    "decisions": "deskpilot_predictions_total",
    "fallbacks": "deskpilot_fallback_total",
    "dropped": "deskpilot_store_dropped_total",
    "load_failures": "deskpilot_model_load_failures_total",
    "rollbacks": "deskpilot_rollbacks_total",
    "shed": "deskpilot_shed_total",
}
QUEUE_GAUGE = "deskpilot_store_queue_depth"
DEFAULT_EVERY_S = 10.0
DEFAULT_WINDOW_S = 300.0
DEFAULT_KEEP_S = 3600.0


@dataclass(frozen=True)
class Snapshot:
    """The totals at one instant: API requests (and 5xx), cumulative latency buckets, the service's
    counters and the store queue's depth."""

    at: float  # epoch seconds
    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound, cumulative count), +Inf last
    queue_depth: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)

    def counter(self, name: str) -> float:
        return self.counters.get(name, 0.0)


def counted_route(route: str) -> bool:
    """Whether requests to ``route`` (a route template label) count as the API's traffic."""
    return route not in EXCLUDED_ROUTES and not route.startswith(EXCLUDED_PREFIXES)


def parse_snapshot(exposition: str, at: float) -> Snapshot:
    """Distil Prometheus exposition text into a :class:`Snapshot`; unknown metrics are ignored."""
    requests = errors = queue = 0.0
    buckets: dict[float, float] = {}
    counters = dict.fromkeys(COUNTERS, 0.0)
    by_sample = {sample: name for name, sample in COUNTERS.items()}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if not math.isfinite(value):
                continue
            if name.startswith(REQUEST_METRIC) and not counted_route(labels.get("route", "")):
                continue
            if name == f"{REQUEST_METRIC}_count":
                requests += value
                if labels.get("status", "").startswith("5"):
                    errors += value
            elif name == f"{REQUEST_METRIC}_bucket":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif name in by_sample:
                counters[by_sample[name]] += value
            elif name == QUEUE_GAUGE:
                queue += value
    return Snapshot(at, requests, errors, tuple(sorted(buckets.items())), queue, counters)


@dataclass(frozen=True)
class Quantile:
    """A latency percentile from histogram buckets: the estimate and the bucket it lies in."""

    estimate: float  # seconds, interpolated linearly inside the bucket
    lower: float
    upper: float  # inf when the rank fell beyond the largest finite bound

    @property
    def beyond_buckets(self) -> bool:
        return math.isinf(self.upper)

    def describe(self) -> str:
        """``≈ 3.1 ms (≤ 5 ms)``, or ``> 5 s`` when only the largest bound is known."""
        if self.beyond_buckets:
            return f"> {duration(self.lower)}"
        return f"≈ {duration(self.estimate)} (≤ {duration(self.upper)})"


def duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s"


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> Quantile | None:
    """The ``q`` quantile of cumulative ``buckets`` (``histogram_quantile``); ``None`` with no counts."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    below, lower = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return Quantile(lower, lower, upper)
            share = (rank - below) / (cumulative - below)
            return Quantile(lower + (upper - lower) * share, lower, upper)
        below, lower = cumulative, upper
    return Quantile(lower, lower, math.inf)


def increase(older: float, newer: float) -> float:
    """What a counter gained; one that went down restarted from zero (a process restart)."""
    return newer - older if newer >= older else newer


@dataclass(frozen=True)
class HealthStats:
    """The service over one span between two snapshots (``since_start``: since the counters began)."""

    start: datetime
    end: datetime
    since_start: bool
    requests: float
    errors: float
    decisions: float
    fallbacks: float
    queue_depth: float
    p50: Quantile | None
    p99: Quantile | None
    counters: dict[str, float]

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def request_rate(self) -> float | None:
        """Requests per second; unknown since start (when the counters began is not known here)."""
        return None if self.since_start or self.seconds <= 0 else self.requests / self.seconds

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.decisions if self.decisions else None


def between(older: Snapshot | None, newer: Snapshot) -> HealthStats:
    """What happened from ``older`` to ``newer``; from zero (since the counters began) without ``older``."""
    base = older or Snapshot(newer.at)
    earlier = dict(base.buckets)
    deltas = [(bound, increase(earlier.get(bound, 0.0), count)) for bound, count in newer.buckets]
    cumulative = _monotonic(deltas)
    counters = {name: increase(base.counter(name), newer.counter(name)) for name in COUNTERS}
    return HealthStats(
        start=datetime.fromtimestamp(base.at, UTC),
        end=datetime.fromtimestamp(newer.at, UTC),
        since_start=older is None,
        requests=increase(base.requests, newer.requests),
        errors=increase(base.errors, newer.errors),
        decisions=counters["decisions"],
        fallbacks=counters["fallbacks"],
        queue_depth=newer.queue_depth,
        p50=quantile(0.5, cumulative),
        p99=quantile(0.99, cumulative),
        counters=counters,
    )


def _monotonic(buckets: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative counts never decrease with the bound (a restart between snapshots could break that)."""
    out: list[tuple[float, float]] = []
    for bound, count in buckets:
        out.append((bound, max(count, out[-1][1] if out else 0.0)))
    return out


@dataclass(frozen=True)
class HealthReport:
    """The latest window and the per-interval history, oldest first, for tiles and sparklines."""

    window: HealthStats
    intervals: list[HealthStats]
    window_s: float

    def series(self, value: Callable[[HealthStats], float | None]) -> list[float | None]:
        return [value(stats) for stats in self.intervals]


class HealthSampler:
    """A bounded ring of snapshots of ``read()`` (exposition text), kept at most every ``every_s``.

    Every read of the health takes a fresh snapshot; :meth:`start`'s background task, when a caller runs
    one, samples between reads too (the pages work either way: without the task, the ring's intervals are
    as long as the gaps between page views). Thread-safe: pages read it from worker threads.
    """

    def __init__(
        self,
        read: Callable[[], bytes | str],
        *,
        every_s: float = DEFAULT_EVERY_S,
        window_s: float = DEFAULT_WINDOW_S,
        keep_s: float = DEFAULT_KEEP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self.every_s = every_s
        self.window_s = window_s
        self._clock = clock
        self._ring: deque[Snapshot] = deque(maxlen=max(2, math.ceil(keep_s / every_s) + 1))
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def snapshots(self) -> list[Snapshot]:
        with self._lock:
            return list(self._ring)

    def sample(self) -> Snapshot:
        """Read the metrics now; the snapshot joins the ring unless the last one is younger than
        ``every_s`` (so the ring's intervals stay about ``every_s`` apart however often it is read)."""
        with self._lock:
            now = self._clock()
            raw = self._read()
            snapshot = parse_snapshot(raw.decode("utf-8") if isinstance(raw, bytes) else raw, now)
            if not self._ring or now - self._ring[-1].at >= self.every_s:
                self._ring.append(snapshot)
            return snapshot

    def report(self) -> HealthReport:
        """The stats from a fresh snapshot back over ``window_s`` (or the longest span held, when the ring
        holds nothing that old), and over each interval between the ring's consecutive snapshots."""
        newest = self.sample()
        ring = self.snapshots()
        held = [s for s in ring if s.at < newest.at]
        within = [s for s in held if newest.at - s.at <= self.window_s]
        start = within[0] if within else (held[-1] if held else None)
        intervals = [between(a, b) for a, b in itertools.pairwise(ring)]
        return HealthReport(between(start, newest), intervals, self.window_s)

    def start(self) -> None:
        """Sample every ``every_s`` in the background (on the running loop) until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="deskpilot-console-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sample)
            except Exception:  # a bad scrape must not end the sampling
                logger.warning("console health: cannot read the metrics", exc_info=True)
            await asyncio.sleep(self.every_s)
