"""Multiple testing across a monitor run: Benjamini–Hochberg q-values over every test of every tenant.

A run makes tens of tests per tenant every window; at a fixed per-test level some fire by chance every
day. Controlling the false discovery rate keeps the share of false alarms among the fired ones at
``alpha`` while keeping power when a real shift moves several signals at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from deskpilot.monitoring.signals.base import INTERVAL_SIGNALS
from deskpilot.monitoring.types import Signal

ALPHA = 0.01


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """BH adjusted p-values (q-values) in input order; ``None`` and NaN entries are skipped and stay ``None``.

    ``q_(i) = min_{j ≥ i} min(1, m · p_(j) / j)`` over the m present p-values sorted ascending: the
    running minimum from the largest p-value down makes q monotone in p.
    """
    present = [i for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    result: list[float | None] = [None] * len(p_values)
    if not present:
        return result
    values = np.asarray([p_values[i] for i in present], dtype=np.float64)
    m = len(values)
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    q = np.empty(m)
    q[order] = adjusted
    for position, value in zip(present, q, strict=True):
        result[position] = float(value)
    return result


def is_test(signal: Signal) -> bool:
    """Whether the run decides this signal from its q-value (computed tests with a p-value)."""
    return signal.skipped is None and signal.p_value is not None and signal.name not in INTERVAL_SIGNALS


def apply_fdr(signals: Sequence[Signal], alpha: float = ALPHA) -> list[Signal]:
    """The signals (of every tenant of a run) with ``q_value`` filled and ``fired = q ≤ alpha`` for tests.

    Interval signals keep the ``fired`` their function set and get no q-value (their p-values are for the
    record and do not join the family); skipped signals never fire.
    """
    tests = [is_test(signal) for signal in signals]
    q_values = benjamini_hochberg([s.p_value if t else None for s, t in zip(signals, tests, strict=True)])
    result = []
    for signal, test, q in zip(signals, tests, q_values, strict=True):
        if signal.skipped is not None:
            result.append(replace(signal, q_value=None, fired=False))
        elif test and q is not None:
            result.append(replace(signal, q_value=q, fired=q <= alpha))
        else:
            result.append(replace(signal, q_value=None))
    return result
