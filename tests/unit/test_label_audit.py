"""The label audit's parts: fold counts, out-of-fold scoring, confident learning, near-duplicate conflicts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

from deskpilot.errors import UsageError
from deskpilot.evaluation.label_audit import (
    audit_labels,
    find_flagged,
    fold_count,
    near_duplicate_conflicts,
    out_of_fold_probabilities,
)
from deskpilot.evaluation.label_audit_report import write_label_audit
from deskpilot.models.base import Classifier


class MemorisingClassifier(Classifier):
    """Remembers what it was fitted on; scores a text by the label it saw it with, else uniformly."""

    family = "memo"
    fitted_on: list[list[str]] = []  # noqa: RUF012 - shared across instances on purpose: the test reads it

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        self.classes_ = np.array(sorted(set(labels)), dtype=object)
        self.seen_ = dict(zip(texts, labels, strict=True))
        MemorisingClassifier.fitted_on.append(list(texts))

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        scores = np.zeros((len(texts), len(self.classes_)))
        for row, text in enumerate(texts):
            label = self.seen_.get(text)
            if label is not None:
                scores[row, list(self.classes_).index(label)] = 10.0
        return scores

    def _save(self, directory: Path) -> None:  # pragma: no cover - not used here
        raise NotImplementedError

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:  # pragma: no cover - not used here
        raise NotImplementedError


def test_fold_count_shrinks_to_the_smallest_label_and_refuses_singletons() -> None:
    assert fold_count(["a"] * 10 + ["b"] * 10, 5) == 5
    assert fold_count(["a"] * 10 + ["b"] * 3, 5) == 3
    with pytest.raises(UsageError, match=r"single row.*: b"):
        fold_count(["a"] * 10 + ["b"], 5)
    with pytest.raises(UsageError, match="two labels"):
        fold_count(["a"] * 10, 5)
    with pytest.raises(UsageError, match="at least 2 folds"):
        fold_count(["a", "a", "b", "b"], 1)


def test_no_row_is_scored_by_a_model_that_saw_it() -> None:
    texts = [f"text {i}" for i in range(30)]
    labels = ["a", "b", "c"] * 10
    MemorisingClassifier.fitted_on = []
    probabilities, classes = out_of_fold_probabilities(
        texts, labels, make_model=MemorisingClassifier, folds=3, seed=0
    )
    assert list(classes) == ["a", "b", "c"]
    assert len(MemorisingClassifier.fitted_on) == 3
    # a memorising model that had seen a row would put all its mass on the row's label: none does
    assert np.allclose(probabilities, 1 / 3)
    seen_together = [set(fold) for fold in MemorisingClassifier.fitted_on]
    assert all(sum(text not in fold for fold in seen_together) == 1 for text in texts)


def test_confident_learning_flags_the_rows_the_probabilities_contradict() -> None:
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"], dtype=object)
    truth = np.repeat([0, 1, 2], 40)
    probabilities = np.full((120, 3), 0.05)
    probabilities[np.arange(120), truth] = 0.9
    probabilities += rng.uniform(0, 0.01, probabilities.shape)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    given = classes[truth].copy()
    wrong = [3, 50, 100]
    given[wrong] = ["b", "c", "a"]
    ranked, self_confidence = find_flagged(list(given), probabilities, classes)
    assert sorted(ranked.tolist()) == wrong
    assert (
        self_confidence[wrong].max() < 0.1 < self_confidence.min(initial=1.0, where=given == classes[truth])
    )


def test_conflicts_are_near_duplicates_with_different_labels_only() -> None:
    texts = [
        "I lost my card yesterday",
        "i lost my card yesterday!",  # same text after folding, other label: a conflict
        "I lost my card yesterday",  # same label as the first: not a conflict with it
        "How do I change my PIN?",
    ]
    labels = ["lost_card", "stolen_card", "lost_card", "change_pin"]
    pairs = near_duplicate_conflicts(texts, labels, threshold=0.9)
    assert {(i, j) for i, j, _ in pairs} == {(0, 1), (1, 2)}
    assert all(0.9 <= similarity <= 1.0 for _, _, similarity in pairs)
    with pytest.raises(UsageError, match="cosine"):
        near_duplicate_conflicts(texts, labels, threshold=0.0)


def test_the_audit_reports_rows_by_their_file_location_and_escapes_texts(tmp_path: Path) -> None:
    texts = [f"message number {i} about {'cards' if i % 2 else 'refunds'}" for i in range(20)]
    texts[0] = "<script>alert(1)</script> refunds please"
    labels = ["refunds" if i % 2 == 0 else "cards" for i in range(20)]
    audit = audit_labels(
        texts,
        labels,
        locations=[i + 2 for i in range(20)],
        keys=[f"k{i}" for i in range(20)],
        make_model=MemorisingClassifier,
        family="memo",
        folds=4,
    )
    assert (audit.rows, audit.labels, audit.folds) == (20, 2, 4)
    assert all(row.location == row.index + 2 and row.key == f"k{row.index}" for row in audit.flagged)
    files = write_label_audit(audit, tmp_path / "report", source="tickets.csv")
    html = files["html"].read_text()
    assert "<script>alert(1)" not in html
    assert files["json"].read_text().count('"index"') == len(audit.flagged)
