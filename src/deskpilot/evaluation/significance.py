"""Significance tests for a challenger against the champion on the same examples.

* McNemar's test compares two classifiers' accuracy using only the discordant pairs: ``b`` rows that only the
  champion gets right and ``c`` rows that only the challenger gets right. Exact binomial test when
  ``b + c < 25`` (the chi-square approximation is poor there), else chi-square with continuity correction.
* Paired bootstrap p-values come from resampled differences ``challenger − champion`` (positive is better)
  computed on the same resampled rows for both models (:mod:`deskpilot.evaluation.bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

EXACT_BELOW = 25


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
