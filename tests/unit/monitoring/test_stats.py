"""The statistical building blocks: proportion intervals and the pooled homogeneity test."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from deskpilot.monitoring.signals.stats import (
    POOLED_CELL,
    homogeneity_test,
    js_distance,
    newcombe_difference,
    wilson,
)


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), table I: 0/10 → (0, 0.2775); 5/10 → (0.2366, 0.7634) at 95 %
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_newcombe_difference_matches_published_value() -> None:
    # Newcombe (1998b), example (56/70 − 48/80): method 10 gives (0.0524, 0.3339)
    assert newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_sparse_cells_are_pooled_until_every_expected_count_reaches_five() -> None:
    reference = {"a": 400, "b": 300, "c": 3, "d": 2, "e": 0}
    window = {"a": 300, "b": 250, "c": 10, "e": 10, "f": 8}
    test = homogeneity_test(reference, window)
    # needed column total: 5 · 1283 / 578 ≈ 11.1; c (13) stands alone, d + e + f (20) are pooled
    assert set(test.pooled) == {"d", "e", "f"}
    assert test.cells == ["a", "b", "c", POOLED_CELL]
    assert test.dof == 3
    table = np.asarray([[400, 300, 3, 2], [300, 250, 10, 18]], dtype=float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    assert expected.min() >= 5
    chi2 = ((table - expected) ** 2 / expected).sum()
    assert test.chi2 == pytest.approx(chi2)


def test_one_sparse_cell_alone_is_merged_with_the_next_smallest() -> None:
    test = homogeneity_test({"a": 500, "b": 40, "c": 1}, {"a": 100, "b": 10, "c": 0})
    assert set(test.pooled) == {"b", "c"}
    assert test.dof == 1


def test_homogeneity_test_holds_its_level_when_both_sides_are_samples() -> None:
    rng = np.random.default_rng(11)
    shares = 1 / (1 + np.arange(40)) ** 1.2
    shares /= shares.sum()
    names = [f"i{k}" for k in range(40)]
    p_values = []
    for _ in range(400):
        reference = Counter(dict(zip(names, rng.multinomial(2000, shares).tolist(), strict=True)))
        window = Counter(dict(zip(names, rng.multinomial(300, shares).tolist(), strict=True)))
        p_values.append(homogeneity_test(reference, window).p_value)
    p = np.asarray(p_values)
    assert np.mean(p <= 0.01) <= 0.025
    assert 0.02 <= np.mean(p <= 0.05) <= 0.09


def test_js_distance_is_zero_for_equal_shares_and_one_for_disjoint() -> None:
    assert js_distance({"a": 2, "b": 2}, {"a": 10, "b": 10}) == pytest.approx(0.0)
    assert js_distance({"a": 5}, {"b": 5}) == pytest.approx(1.0)
