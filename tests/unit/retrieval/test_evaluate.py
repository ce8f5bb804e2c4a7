"""The evaluation harness: splits that keep tuning away from the reported queries, a typed report, tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deskpilot.errors import UsageError
from deskpilot.retrieval.evaluate import (
    evaluate_retrieval,
    retrieval_splits,
    tickets_from_frame,
    tune_fusion,
)
from deskpilot.retrieval.fusion import FusionParams
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.metrics import RETRIEVAL_METRICS
from tests.helpers import bundled_subset
from tests.unit.retrieval.fakes import HashingEncoder

TOPICS = {
    "refund": "refund money back return",
    "pin": "pin code blocked locked",
    "atm": "atm cash withdrawal machine",
    "fee": "fee charge extra cost",
}


def labelled_frame(per_topic: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for label, words in TOPICS.items():
        for i in range(per_topic):
            picked = rng.choice(words.split(), size=2, replace=False)
            rows.append({"text": f"{' '.join(picked)} please {i} {label}", "label": label})
    return pd.DataFrame(rows)


def test_the_tuning_split_is_carved_from_the_indexed_side_only() -> None:
    frame = bundled_subset(labels=6, per_label=30)
    report, tuning = retrieval_splits(frame, digest="ab" * 32, seed=0)
    assert not set(report.indexed) & set(report.queries)
    assert set(tuning.indexed) | set(tuning.queries) == set(report.indexed)
    assert not set(tuning.indexed) & set(tuning.queries)
    assert not (set(tuning.indexed) | set(tuning.queries)) & set(report.queries)
    assert set(frame["label"].iloc[report.queries]) == set(frame["label"])  # stratified
    again, _ = retrieval_splits(frame, digest="ab" * 32, seed=0)
    np.testing.assert_array_equal(again.queries, report.queries)


def test_report_compares_modes_per_metric_and_serializes() -> None:
    frame = labelled_frame()
    index = RetrievalIndex.build(tickets_from_frame(frame, np.arange(40), tenant="t"), HashingEncoder())
    queries = frame["text"].iloc[40:].tolist()
    intents = frame["label"].iloc[40:].tolist()
    report = evaluate_retrieval(index, "t", [*queries, "anything"], [*intents, "unknown-intent"], n_boot=200)
    assert (report.queries, report.skipped_queries, report.indexed) == (len(queries), 1, 40)
    assert list(report.systems) == ["hybrid", "dense", "lexical"]
    assert len(report.comparisons) == 2 * len(RETRIEVAL_METRICS)
    assert report.systems["lexical"].means["p@1"] == pytest.approx(1.0)  # the label word is in every text
    data = report.to_dict()
    assert set(data["means"]) == {"hybrid", "dense", "lexical"}
    assert data["comparisons"][0]["baseline"] == "dense"
    assert data["test"] == {"method": "paired bootstrap, one-sided", "n_boot": 200, "seed": 0}
    assert "| hybrid vs lexical | p@1 |" in report.markdown()


def test_tune_fusion_ranks_candidates_by_the_metric() -> None:
    frame = labelled_frame()
    index = RetrievalIndex.build(tickets_from_frame(frame, np.arange(40), tenant="t"), HashingEncoder())
    candidates = [FusionParams(dense_weight=1.0, lexical_weight=w) for w in (0.01, 1.0, 5.0)]
    result = tune_fusion(
        index, "t", frame["text"].iloc[40:].tolist(), frame["label"].iloc[40:].tolist(), candidates
    )
    assert [value for _, value in result.table] == sorted((v for _, v in result.table), reverse=True)
    assert result.best == result.table[0][0]
    assert {params for params, _ in result.table} == set(candidates)


def test_evaluation_needs_labels_it_can_match() -> None:
    index = RetrievalIndex.build(
        tickets_from_frame(labelled_frame(), np.arange(8), tenant="t"), HashingEncoder()
    )
    with pytest.raises(UsageError, match="every query needs its intent"):
        evaluate_retrieval(index, "t", ["a", "b"], ["refund"])
    with pytest.raises(UsageError, match="no query's intent"):
        evaluate_retrieval(index, "t", ["a"], ["nothing-like-it"])
