"""What a model costs to run: single-message latency, batch throughput and CPU cost per 1,000 predictions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

BATCH_SIZE = 256
LATENCY_SAMPLE = 100
WARMUP = 3


@dataclass(frozen=True)
class CostProfile:
    latency_p50_ms: float
    latency_p99_ms: float
    latency_sample: int
    throughput_per_s: float  # wall clock, batches of BATCH_SIZE
    cpu_ms_per_message: float  # process CPU time, all threads
    cost_per_1k: float  # cpu_ms_per_message x 1000 at cpu_hour_price
    cpu_hour_price: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def timed_batches(
    predict_proba: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str]
) -> tuple[np.ndarray, float, float]:
    """Probabilities for every text, plus the wall and CPU seconds the batches took."""
    wall, cpu = time.perf_counter(), time.process_time()
    parts = [predict_proba(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)]
    return np.vstack(parts), time.perf_counter() - wall, time.process_time() - cpu


def single_message_latency(
    predict_proba: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], sample: int = LATENCY_SAMPLE
) -> np.ndarray:
    """Milliseconds per one-text call, on the first ``sample`` texts after a short warm-up."""
    chosen = list(texts[:sample])
    for text in chosen[:WARMUP]:
        predict_proba([text])
    out = np.empty(len(chosen))
    for i, text in enumerate(chosen):
        started = time.perf_counter()
        predict_proba([text])
        out[i] = (time.perf_counter() - started) * 1000.0
    return out


def cost_profile(
    latencies_ms: np.ndarray, n_rows: int, wall_s: float, cpu_s: float, *, cpu_hour_price: float
) -> CostProfile:
    cpu_ms = cpu_s * 1000.0 / max(n_rows, 1)
    p50, p99 = np.percentile(latencies_ms, [50, 99]) if latencies_ms.size else (float("nan"),) * 2
    return CostProfile(
        latency_p50_ms=float(p50),
        latency_p99_ms=float(p99),
        latency_sample=int(latencies_ms.size),
        throughput_per_s=n_rows / wall_s if wall_s > 0 else float("inf"),
        cpu_ms_per_message=cpu_ms,
        cost_per_1k=cpu_ms * 1000.0 / 3_600_000.0 * cpu_hour_price,
        cpu_hour_price=cpu_hour_price,
    )
