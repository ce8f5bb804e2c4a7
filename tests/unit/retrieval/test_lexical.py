"""The BM25 side: tokenizer, light stemming, masking before the top k, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.retrieval.lexical import LexicalIndex, LexicalParams, light_stem, tokenize, top_k


def test_tokenizer_lowercases_drops_stopwords_and_optionally_stems() -> None:
    text = "The card WAS charged twice; charges & charging fees!"
    assert tokenize(text, stopwords=False) == [
        "the",
        "card",
        "was",
        "charged",
        "twice",
        "charges",
        "charging",
        "fees",
    ]
    assert "the" not in tokenize(text)
    assert tokenize(text, stem=True).count("charg") == 3
    words = ("address", "cards", "policies", "atm", "using", "pin")
    assert [light_stem(w) for w in words] == ["address", "card", "policy", "atm", "using", "pin"]


def test_scores_cover_every_document_and_unknown_queries_give_none() -> None:
    index = LexicalIndex(LexicalParams()).fit(["lost card", "card fee", "", "exchange rate"])
    scores = index.scores("my lost card")
    assert scores is not None
    assert scores.shape == (4,)
    assert scores[0] > scores[1] > 0
    assert scores[2] == scores[3] == 0
    assert index.scores("zebra") is None
    assert index.scores("the") is None  # only stopwords


def test_top_k_masks_before_cutting_and_skips_zero_scores() -> None:
    scores = np.array([5.0, 4.0, 3.0, 0.0, 2.0, 1.0], dtype=np.float32)
    positions, values = top_k(scores, 2)
    assert positions.tolist() == [0, 1]
    allowed = np.array([False, False, True, True, False, True])
    positions, values = top_k(scores, 3, allowed)
    assert positions.tolist() == [2, 5]  # the zero-score row is not a match
    assert values.tolist() == [3.0, 1.0]
    tied = np.array([1.0, 2.0, 2.0, 2.0], dtype=np.float32)
    assert top_k(tied, 4)[0].tolist() == [1, 2, 3, 0]


def test_save_and_load_score_the_same(tmp_path: Path) -> None:
    params = LexicalParams(k1=1.2, b=0.5, stem=True)
    index = LexicalIndex(params).fit(["charged twice", "charging fee", "card"])
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", params, 3)
    np.testing.assert_array_equal(loaded.scores("charges"), index.scores("charges"))
    assert LexicalParams.from_dict(params.to_dict()) == params


@pytest.mark.parametrize("seed", range(5))
def test_top_k_equals_a_full_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.where(rng.random(2000) < 0.6, 0.0, rng.pareto(2.0, 2000)).astype(np.float32)
    scores[rng.choice(2000, 30)] = scores.max()  # ties at the top
    allowed = rng.random(2000) < 0.5
    for k in (1, 20, 500):
        for mask in (None, allowed):
            masked = scores if mask is None else np.where(mask, scores, 0.0)
            expected = sorted((i for i in range(2000) if masked[i] > 0), key=lambda i: (-masked[i], i))[:k]
            positions, values = top_k(scores, k, mask)
            assert positions.tolist() == expected
            np.testing.assert_array_equal(values, masked[expected])
