"""Selective prediction: how many tickets can be routed automatically at a target precision.

A ticket is routed ``auto`` when the model's top confidence is at least the threshold. On validation data we
pick the threshold that routes the largest share automatically while the accuracy of those routed stays at or
above the target precision; everything below it goes to a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deskpilot.domain import RoutingThreshold

DEFAULT_TARGET_PRECISION = 0.97


@dataclass(frozen=True)
class CoverageCurve:
    """Coverage and precision of the auto-routed share at every distinct confidence threshold, high to low."""

    thresholds: np.ndarray
    coverage: np.ndarray
    precision: np.ndarray


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> CoverageCurve:
    """Vectorized: sort once, cumulative sums, keep the last index of each run of tied confidences."""
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError("confidence and correct must be 1-D arrays of the same length")
    if confidence.size == 0:
        empty = np.array([], dtype=float)
        return CoverageCurve(empty, empty, empty)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    hits = np.cumsum(correct[order].astype(np.int64))
    counts = np.arange(1, confidence.size + 1)
    last_of_tie = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]
    return CoverageCurve(
        thresholds=sorted_conf[last_of_tie],
        coverage=counts[last_of_tie] / confidence.size,
        precision=hits[last_of_tie] / counts[last_of_tie],
    )


def pick_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_precision: float = DEFAULT_TARGET_PRECISION
) -> RoutingThreshold:
    """The lowest threshold whose auto-routed share keeps precision ≥ target (largest coverage)."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], not {target_precision}")
    curve = coverage_curve(confidence, correct)
    meets = np.flatnonzero(curve.precision >= target_precision)
    if meets.size == 0:
        return RoutingThreshold(None, target_precision, 0.0, None, int(confidence.size))
    best = meets[np.argmax(curve.coverage[meets])]
    return RoutingThreshold(
        threshold=float(curve.thresholds[best]),
        target_precision=target_precision,
        coverage=float(curve.coverage[best]),
        precision=float(curve.precision[best]),
        n=int(confidence.size),
    )
