"""Small statistical building blocks shared by the signals: proportion intervals and histogram tests.

Every comparison here is two-sample: the reference side is itself a sample (the validation split, a few
thousand texts), so testing a window against the reference's shares as if they were exact would fire on the
reference's own noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from deskpilot.evaluation import significance

MIN_EXPECTED = 5.0
POOLED_CELL = "__pooled__"


def z_value(level: float) -> float:
    """The two-sided normal quantile of a confidence level (1.96 at 0.95)."""
    return float(stats.norm.ppf(0.5 + level / 2))


def wilson(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of :mod:`deskpilot.evaluation.significance` at a confidence level."""
    return significance.wilson(successes, total, z=z_value(level))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Interval for ``k1/n1 - k2/n2`` from the two Wilson intervals (Newcombe's hybrid score method).

    It keeps good coverage for rates near 0 or 1 (auto-route rates often are), where Wald's does not.
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, level)
    l2, u2 = wilson(k2, n2, level)
    low = p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = p1 - p2 + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (float(low), float(high))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (k1 + k2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / np.sqrt(variance)
    return float(2 * stats.norm.sf(abs(z)))


@dataclass(frozen=True)
class HomogeneityTest:
    """A chi-square test that two samples share one categorical distribution, after pooling sparse cells."""

    chi2: float
    p_value: float
    dof: int
    cells: list[str]  # the cells tested; ``POOLED_CELL`` holds the sparse ones merged together
    pooled: list[str]


def homogeneity_test(
    reference: Mapping[str, int], window: Mapping[str, int], min_expected: float = MIN_EXPECTED
) -> HomogeneityTest:
    """Chi-square test of homogeneity on the 2 × K table of counts.

    Cells whose expected count (on either row) is under ``min_expected`` are merged into one pooled cell,
    smallest first, and the pool grows until it too meets the bound: the chi-square approximation needs
    it, and the sparse tail of a long intent list is where the noise is.
    """
    labels = sorted(set(reference) | set(window))
    ref = np.asarray([reference.get(label, 0) for label in labels], dtype=np.float64)
    win = np.asarray([window.get(label, 0) for label in labels], dtype=np.float64)
    total = ref.sum() + win.sum()
    smaller = min(ref.sum(), win.sum())
    if smaller <= 0:
        return HomogeneityTest(0.0, 1.0, 0, labels, [])
    needed = min_expected * total / smaller
    column = ref + win
    order = np.argsort(column, kind="stable")
    in_pool = column < needed
    pool_size = column[in_pool].sum()
    for position in order:
        if pool_size >= needed or in_pool.all():
            break
        if not in_pool[position] and pool_size > 0:
            in_pool[position] = True
            pool_size += column[position]
    kept = ~in_pool
    table = np.vstack([ref[kept], win[kept]])
    cells = [label for label, keep in zip(labels, kept, strict=True) if keep]
    if in_pool.any() and pool_size > 0:
        table = np.column_stack([table, [ref[in_pool].sum(), win[in_pool].sum()]])
        cells.append(POOLED_CELL)
    pooled = [label for label, pool in zip(labels, in_pool, strict=True) if pool]
    if table.shape[1] < 2:
        return HomogeneityTest(0.0, 1.0, 0, cells, pooled)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return HomogeneityTest(chi2, float(stats.chi2.sf(chi2, dof)), dof, cells, pooled)


def js_distance(reference: Mapping[str, int], window: Mapping[str, int]) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between the two histograms' shares."""
    labels = sorted(set(reference) | set(window))
    ref = np.asarray([reference.get(label, 0) for label in labels], dtype=np.float64)
    win = np.asarray([window.get(label, 0) for label in labels], dtype=np.float64)
    if ref.sum() <= 0 or win.sum() <= 0:
        return float("nan")
    return float(jensenshannon(ref / ref.sum(), win / win.sum(), base=2))


def top_movers(reference: Mapping[str, int], window: Mapping[str, int], top: int = 5) -> list[dict[str, Any]]:
    """The categories whose share moved most between the two histograms, for the alert's detail."""
    n_ref = max(sum(reference.values()), 1)
    n_win = max(sum(window.values()), 1)
    rows: list[dict[str, Any]] = [
        {
            "name": label,
            "observed": round(window.get(label, 0) / n_win, 4),
            "expected": round(reference.get(label, 0) / n_ref, 4),
            "count": int(window.get(label, 0)),
        }
        for label in set(reference) | set(window)
    ]
    rows.sort(key=lambda row: (-abs(row["observed"] - row["expected"]), row["name"]))
    return rows[:top]
