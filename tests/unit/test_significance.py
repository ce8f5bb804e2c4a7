"""McNemar's test and the paired-bootstrap p-values against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deskpilot.evaluation.significance import mcnemar, p_better, p_worse


def paired(b: int, c: int, both: int = 50, neither: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes with b rows only the champion gets right and c rows only the challenger gets right."""
    champion = np.array([True] * both + [False] * neither + [True] * b + [False] * c)
    challenger = np.array([True] * both + [False] * neither + [False] * b + [True] * c)
    return champion, challenger


def test_exact_test_for_few_discordant_pairs() -> None:
    result = mcnemar(*paired(10, 0))
    assert result.method == "exact"
    assert result.p_value == pytest.approx(2 * 0.5**10)
    assert (result.only_champion_correct, result.only_challenger_correct) == (10, 0)


def test_exact_test_is_symmetric_and_one_for_a_tie() -> None:
    assert mcnemar(*paired(3, 7)).p_value == pytest.approx(mcnemar(*paired(7, 3)).p_value)
    # P(X <= 3) for Binomial(10, .5) = 176/1024, doubled
    assert mcnemar(*paired(3, 7)).p_value == pytest.approx(2 * 176 / 1024)
    assert mcnemar(*paired(6, 6)).p_value == pytest.approx(1.0)


def test_chi_square_with_continuity_correction() -> None:
    result = mcnemar(*paired(30, 10))
    assert result.method == "chi2"
    assert result.statistic == pytest.approx((20 - 1) ** 2 / 40)
    # chi-square with one degree of freedom: P(X > s) = erfc(sqrt(s / 2))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))


def test_no_discordant_pairs_means_no_difference() -> None:
    result = mcnemar(*paired(0, 0))
    assert result.p_value == 1.0


def test_mcnemar_needs_paired_outcomes() -> None:
    with pytest.raises(ValueError, match="same rows"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))


def test_bootstrap_p_values() -> None:
    worse = np.full(999, -0.05)
    assert p_worse(worse, 0.01) == pytest.approx(1 / 1000)
    assert p_worse(worse, 0.10) == pytest.approx(1.0)  # a drop of 0.05 is within a tolerance of 0.10
    assert p_worse(np.zeros(999), 0.0) == pytest.approx(1.0)
    assert p_better(np.full(999, 0.02)) == pytest.approx(1 / 1000)
    assert p_better(np.r_[np.full(900, 0.02), np.full(99, -0.01)]) == pytest.approx(100 / 1000)
    assert p_worse(np.array([np.nan, -1.0]), 0.0) == pytest.approx(1 / 2)
