"""Per-tenant token buckets: a steady ``rate_per_s`` with room for bursts of up to ``burst`` requests.

A batch costs its item count, so a tenant cannot dodge the limit by batching. A denied request consumes
nothing and learns how long until enough tokens exist (the API rounds that up for ``Retry-After``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deskpilot.errors import ConfigError

_EPSILON = 1e-9  # float refill sums land a hair under whole numbers


@dataclass(frozen=True)
class Decision:
    """The answer to one request.

    ``exceeds_burst`` marks a cost no bucket can ever hold (a batch larger than the burst): retrying cannot
    help, so ``retry_after_s`` is 0 and the API should reject it as too large rather than ask to wait.
    """

    allowed: bool
    retry_after_s: float
    remaining: int
    exceeds_burst: bool = False


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _check_limit(rate: float, burst: int, where: str) -> None:
    if math.isnan(rate) or math.isinf(rate):
        raise ConfigError(f"{where}: the rate must be a finite number of requests per second")
    if rate > 0 and burst < 1:
        raise ConfigError(f"{where}: the burst must be at least 1 when a rate is set")


class TokenBucketLimiter:
    """Thread-safe token buckets keyed by tenant; ``rate_per_s <= 0`` means unlimited.

    A bucket that has refilled to full is indistinguishable from a new one, so such buckets are swept out
    (at most every ``sweep_interval_s``) and memory tracks recently active tenants only.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        overrides: Mapping[str, tuple[float, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        sweep_interval_s: float = 60.0,
    ) -> None:
        _check_limit(rate_per_s, burst, "rate limit")
        for tenant, (rate, tenant_burst) in (overrides or {}).items():
            _check_limit(rate, tenant_burst, f"rate limit for tenant {tenant!r}")
        self._default = (float(rate_per_s), int(burst))
        self._overrides = {t: (float(r), int(b)) for t, (r, b) in (overrides or {}).items()}
        self._clock = clock
        self._sweep_interval = sweep_interval_s
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def __len__(self) -> int:
        """Buckets held in memory right now."""
        return len(self._buckets)

    def limits_for(self, tenant: str) -> tuple[float, int]:
        """(rate per second, burst) that apply to ``tenant``."""
        return self._overrides.get(tenant, self._default)

    def acquire(self, tenant: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from the tenant's bucket if it holds that many; never waits."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        rate, burst = self.limits_for(tenant)
        if rate <= 0:
            return Decision(allowed=True, retry_after_s=0.0, remaining=max(burst, 0))
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            bucket = self._buckets.get(tenant)
            if bucket is None:
                bucket = self._buckets[tenant] = _Bucket(tokens=float(burst), updated=now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate)
                bucket.updated = now
            if cost > burst:
                return Decision(False, 0.0, _whole(bucket.tokens), exceeds_burst=True)
            if bucket.tokens + _EPSILON >= cost:
                bucket.tokens = max(0.0, bucket.tokens - cost)
                return Decision(True, 0.0, _whole(bucket.tokens))
            return Decision(False, (cost - bucket.tokens) / rate, _whole(bucket.tokens))

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep < self._sweep_interval:
            return
        self._last_sweep = now
        full = []
        for tenant, bucket in self._buckets.items():
            rate, burst = self.limits_for(tenant)
            if bucket.tokens + (now - bucket.updated) * rate + _EPSILON >= burst:
                full.append(tenant)
        for tenant in full:
            del self._buckets[tenant]


def _whole(tokens: float) -> int:
    return math.floor(tokens + _EPSILON)
