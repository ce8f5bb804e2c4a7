"""What every signal function shares: its minimum window, the skipped result, and its timing."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import ParamSpec

import numpy as np
from scipy import stats

from deskpilot.monitoring.types import Signal, SignalKind, SignalName

P = ParamSpec("P")

# Below these sizes a signal is skipped rather than computed: its test would have little power and its
# approximations (chi-square cells, normal tails, bootstrap) would be off. Counts are decisions in the
# window, except for the feedback signals, which count verdicts.
MIN_WINDOW: dict[SignalName, int] = {
    SignalName.INTENT_HISTOGRAM: 100,
    SignalName.CONFIDENCE: 50,
    SignalName.MARGIN: 50,
    SignalName.AUTO_ROUTE_RATE: 50,
    SignalName.DOMAIN_CLASSIFIER: 100,
    SignalName.VOCABULARY: 50,
    SignalName.TEXT_LENGTH: 50,
    SignalName.LANGUAGE: 50,
    SignalName.EMBEDDING_MMD: 50,
    SignalName.LABEL_SHIFT: 200,
    SignalName.ACCURACY_FEEDBACK: 30,  # verdicts, with at least MIN_AUDIT_VERDICTS on auto routes
    SignalName.ACCURACY_ESTIMATE: 50,
    SignalName.ACCURACY_AUDIT_SAMPLE: 20,  # audit-sample verdicts
}

# Signals decided on their interval by the function itself; the others are tests that the run fires
# from Benjamini–Hochberg q-values.
INTERVAL_SIGNALS = frozenset(
    {
        SignalName.LABEL_SHIFT,
        SignalName.ACCURACY_FEEDBACK,
        SignalName.ACCURACY_ESTIMATE,
        SignalName.ACCURACY_AUDIT_SAMPLE,
    }
)


def skipped(
    name: SignalName, kind: SignalKind, reason: str, n_window: int = 0, n_reference: int = 0
) -> Signal:
    return Signal(name=name, kind=kind, n_window=n_window, n_reference=n_reference, skipped=reason)


def too_small(name: SignalName, kind: SignalKind, n_window: int, n_reference: int = 0) -> Signal | None:
    """The skipped signal when the window is under the signal's minimum, else ``None``."""
    needed = MIN_WINDOW[name]
    if n_window >= needed:
        return None
    return skipped(name, kind, f"window has {n_window} < {needed}", n_window, n_reference)


def timed(func: Callable[P, Signal]) -> Callable[P, Signal]:
    """Record the seconds a signal took in its ``seconds`` field, so slow ones show up in the run report."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Signal:
        start = time.perf_counter()
        signal = func(*args, **kwargs)
        return replace(signal, seconds=round(time.perf_counter() - start, 4))

    return wrapper


def ks_signal(name: SignalName, kind: SignalKind, reference: np.ndarray, values: np.ndarray) -> Signal:
    """Two-sample Kolmogorov–Smirnov test of a window's values against the profile's, with the centre and
    the upper tail of both sides in the detail (what an operator reads first)."""
    values = values[np.isfinite(values)]
    if small := too_small(name, kind, len(values), len(reference)):
        return small
    if len(reference) == 0:
        return skipped(name, kind, "profile has no reference values", len(values))
    result = stats.ks_2samp(values, reference)
    return Signal(
        name=name,
        kind=kind,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        n_window=len(values),
        n_reference=len(reference),
        detail={
            "window_mean": round(float(values.mean()), 4),
            "reference_mean": round(float(reference.mean()), 4),
            "window_median": round(float(np.median(values)), 4),
            "reference_median": round(float(np.median(reference)), 4),
            "window_p90": round(float(np.quantile(values, 0.9)), 4),
            "reference_p90": round(float(np.quantile(reference, 0.9)), 4),
        },
    )
