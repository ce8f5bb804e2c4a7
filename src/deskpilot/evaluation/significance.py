"""The statistics that evaluation and rollout share: tests of a challenger against the champion, and
intervals of proportions. One module, so that a gate and a rollout rule never disagree on a formula.

* McNemar's test compares two classifiers' accuracy using only the discordant pairs: ``b`` rows that only the
  champion gets right and ``c`` rows that only the challenger gets right. Exact binomial test when
  ``b + c < 25`` (the chi-square approximation is poor there), else chi-square with continuity correction.
* Paired bootstrap p-values come from resampled differences ``challenger − champion`` (positive is better)
  computed on the same resampled rows for both models (:mod:`deskpilot.evaluation.bootstrap`).
* The one-sided two-proportion z-test compares accuracies measured on *different* requests (canary feedback).
* Wilson's score interval bounds a proportion (agreement, accuracy) where the normal one misbehaves near 0/1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

EXACT_BELOW = 25
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class McNemarResult:
    only_champion_correct: int  # b
    only_challenger_correct: int  # c
    statistic: float
    p_value: float
    method: str  # "exact" or "chi2"

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "only_champion_correct": self.only_champion_correct,
            "only_challenger_correct": self.only_challenger_correct,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "method": self.method,
        }


def mcnemar(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> McNemarResult:
    """Two-sided McNemar test of equal accuracy on paired boolean outcomes."""
    if champion_correct.shape != challenger_correct.shape:
        raise ValueError("McNemar's test needs outcomes on the same rows")
    a = champion_correct.astype(bool)
    z = challenger_correct.astype(bool)
    b = int(np.count_nonzero(a & ~z))
    c = int(np.count_nonzero(~a & z))
    discordant = b + c
    if discordant == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact")
    if discordant < EXACT_BELOW:
        p_value = float(stats.binomtest(min(b, c), discordant, 0.5).pvalue)
        return McNemarResult(b, c, float(min(b, c)), min(1.0, p_value), "exact")
    statistic = (abs(b - c) - 1.0) ** 2 / discordant
    return McNemarResult(b, c, float(statistic), float(stats.chi2.sf(statistic, df=1)), "chi2")


def p_worse(differences: np.ndarray, tolerated_drop: float) -> float:
    """One-sided bootstrap p-value of "the challenger is worse by more than ``tolerated_drop``".

    Small when almost no resample shows a difference at or above ``-tolerated_drop``.
    """
    finite = differences[np.isfinite(differences)]
    return float((1 + np.count_nonzero(finite >= -tolerated_drop)) / (finite.size + 1))


def p_better(differences: np.ndarray) -> float:
    """One-sided bootstrap p-value of "the challenger is better" (small when few resamples show ≤ 0)."""
    finite = differences[np.isfinite(differences)]
    return float((1 + np.count_nonzero(finite <= 0.0)) / (finite.size + 1))


def proportion_drop_p_value(
    baseline_successes: int, baseline_n: int, successes: int, n: int, tolerated_drop: float
) -> float:
    """One-sided two-proportion z-test of "the rate ``successes / n`` is below the baseline's by more than
    ``tolerated_drop``" (pooled variance); small when the data say it is."""
    if min(n, baseline_n) <= 0:
        raise ValueError("both proportions need at least one observation")
    p1, p0 = successes / n, baseline_successes / baseline_n
    pooled = (successes + baseline_successes) / (n + baseline_n)
    spread = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n + 1 / baseline_n))
    return float(stats.norm.sf((p0 - p1 - tolerated_drop) / spread))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there is nothing to estimate from."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    p = successes / n
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n``, with its 95% Wilson interval."""

    successes: int
    n: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.successes, self.n)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {"successes": self.successes, "n": self.n, "rate": self.rate, "low": low, "high": high}


def ci(value: Proportion | None) -> str:
    """``91.2% [89.5%, 92.7%]``: a rate with its 95% Wilson interval, or ``n/a``."""
    if value is None or value.rate is None:
        return "n/a"
    low, high = value.interval
    return f"{value.rate:.1%} [{low:.1%}, {high:.1%}]"
