"""Span scoring against counts worked out by hand."""

from __future__ import annotations

import pytest

from deskpilot.data.pii import PiiSpan
from deskpilot.data.pii_scoring import OVERALL, KindScore, score_spans

GOLD = [
    [PiiSpan("EMAIL", 0, 10), PiiSpan("PHONE", 20, 32)],
    [PiiSpan("CARD", 5, 24)],
    [],
]
PRED = [
    [PiiSpan("EMAIL", 0, 10), PiiSpan("PHONE", 19, 32)],  # phone off by one: a false positive and a miss
    [PiiSpan("CARD", 5, 24), PiiSpan("IP", 30, 39)],  # extra IP
    [PiiSpan("PHONE", 0, 9)],  # hard negative hit
]


def test_per_kind_counts_and_ratios() -> None:
    scores = score_spans(GOLD, PRED)
    assert scores["EMAIL"] == KindScore("EMAIL", 1, 0, 0)
    assert scores["PHONE"] == KindScore("PHONE", 0, 2, 1)
    assert scores["CARD"] == KindScore("CARD", 1, 0, 0)
    assert scores["IP"] == KindScore("IP", 0, 1, 0)
    overall = scores[OVERALL]
    assert overall == KindScore(OVERALL, 2, 3, 1)
    assert overall.precision == pytest.approx(2 / 5)
    assert overall.recall == pytest.approx(2 / 3)
    assert overall.f1 == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert scores["PHONE"].precision == 0.0
    assert scores["PHONE"].f1 == 0.0


def test_kind_filter_scores_only_shared_kinds() -> None:
    scores = score_spans(GOLD, PRED, kinds={"EMAIL", "CARD", "IBAN"})
    assert set(scores) == {"EMAIL", "CARD", "IBAN", OVERALL}
    assert scores["IBAN"] == KindScore("IBAN", 0, 0, 0)
    assert scores[OVERALL] == KindScore(OVERALL, 2, 0, 0)


def test_empty_denominators_read_as_perfect_but_counts_tell() -> None:
    nothing = KindScore("IBAN", 0, 0, 0)
    assert (nothing.precision, nothing.recall, nothing.support) == (1.0, 1.0, 0)
    missed = KindScore("IBAN", 0, 0, 4)
    assert (missed.precision, missed.recall, missed.f1) == (1.0, 0.0, 0.0)


def test_duplicate_predictions_count_once() -> None:
    scores = score_spans([[PiiSpan("IP", 0, 7)]], [[PiiSpan("IP", 0, 7), PiiSpan("IP", 0, 7)]])
    assert scores["IP"] == KindScore("IP", 1, 0, 0)


def test_misaligned_inputs_are_an_error() -> None:
    with pytest.raises(ValueError, match="zip"):
        score_spans([[]], [])
