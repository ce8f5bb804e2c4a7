"""Ranking metrics on hand-computed lists, and the paired bootstrap's behaviour at the extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deskpilot.retrieval.metrics import paired_bootstrap, query_metrics, relevance_matrix


def test_metrics_of_hand_computed_lists() -> None:
    relevant = relevance_matrix(
        [
            [True, False, True, False, False, False, False, False, False, False],  # 2 of 4 relevant found
            [False, False, False, True],  # short list: padded with misses
            [],  # nothing returned
        ]
    )
    values = query_metrics(relevant, np.array([4, 1, 3]))
    dcg_first = 1 + 1 / math.log2(4)
    idcg_first = 1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    np.testing.assert_allclose(values["p@1"], [1, 0, 0])
    np.testing.assert_allclose(values["p@5"], [0.4, 0.2, 0])
    np.testing.assert_allclose(values["recall@10"], [0.5, 1.0, 0])
    np.testing.assert_allclose(values["ndcg@10"], [dcg_first / idcg_first, 1 / math.log2(5), 0])
    np.testing.assert_allclose(values["mrr"], [1.0, 0.25, 0.0])


def test_ideal_dcg_is_capped_at_ten_relevant_items() -> None:
    perfect = relevance_matrix([[True] * 10])
    assert query_metrics(perfect, np.array([250]))["ndcg@10"][0] == pytest.approx(1.0)
    assert query_metrics(perfect, np.array([250]))["recall@10"][0] == pytest.approx(10 / 250)


def test_queries_without_relevant_items_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        query_metrics(relevance_matrix([[True]]), np.array([0]))


def test_paired_bootstrap_extremes_and_determinism() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(300)
    same = paired_bootstrap(base, base.copy(), n_boot=500)
    assert same.difference == 0.0
    assert same.p_value == 1.0
    better = paired_bootstrap(base, base + 0.05 + rng.normal(0, 0.01, 300), n_boot=500, seed=7)
    assert better.p_value == pytest.approx(1 / 501)
    assert better.low < better.difference < better.high
    first = paired_bootstrap(base, base[::-1], n_boot=300, seed=1)
    assert first == paired_bootstrap(base, base[::-1], n_boot=300, seed=1)
    assert paired_bootstrap(base + 0.1, base, n_boot=300).p_value > 0.99  # worse is never "better"
