"""Where a model is right and wrong: per-class scores, confusions, slices, reliability and example errors.

Everything is computed from label indices with ``bincount`` and sorting, so 100k rows take milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from deskpilot.evaluation.bootstrap import ECE_BINS, calibration_bin

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, None))
MAX_SLICE_VALUES = 30  # a column with more distinct values is an identifier, not a slice
MIN_SLICE_ROWS = 20


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True)
class Confusion:
    truth: str
    predicted: str
    count: int
    share_of_truth: float


@dataclass(frozen=True)
class SliceScore:
    column: str
    value: str
    n: int
    accuracy: float
    auto_coverage: float
    auto_precision: float | None


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class ExampleError:
    text: str
    truth: str
    predicted: str
    confidence: float
    route: str


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    flat = truth.astype(np.int64) * n_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def class_scores(matrix: np.ndarray, labels: Sequence[str]) -> list[ClassScore]:
    """Per-class precision, recall, F1 and support, worst F1 first (ties: larger support first)."""
    true_pos = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(true_pos), where=total > 0)
    rows = [
        ClassScore(
            labels[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]), int(predicted[i])
        )
        for i in range(len(labels))
        if support[i] > 0 or predicted[i] > 0
    ]
    return sorted(rows, key=lambda row: (row.f1, -row.support, row.label))


def top_confusions(matrix: np.ndarray, labels: Sequence[str], limit: int = 20) -> list[Confusion]:
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    flat = np.argsort(-off_diagonal, axis=None, kind="stable")[:limit]
    support = matrix.sum(axis=1)
    out = []
    for index in flat:
        t, p = divmod(int(index), matrix.shape[1])
        count = int(off_diagonal[t, p])
        if count == 0:
            break
        out.append(Confusion(labels[t], labels[p], count, count / int(support[t])))
    return out


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    which = calibration_bin(confidence, bins)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return [
        ReliabilityBin(
            float(edges[b]),
            float(edges[b + 1]),
            int(counts[b]),
            conf_sum[b] / counts[b],
            hit_sum[b] / counts[b],
        )
        for b in range(bins)
        if counts[b] > 0
    ]


def length_bucket(word_counts: np.ndarray) -> np.ndarray:
    names = np.empty(word_counts.size, dtype=object)
    for low, high in LENGTH_BUCKETS:
        inside = word_counts >= low if high is None else (word_counts >= low) & (word_counts <= high)
        names[inside] = f"{low}+ words" if high is None else f"{low}-{high} words"
    names[word_counts < 1] = "empty"
    return names


def slice_scores(columns: dict[str, np.ndarray], correct: np.ndarray, auto: np.ndarray) -> list[SliceScore]:
    """Accuracy and auto-routing per value of each categorical column (identifiers are skipped)."""
    out = []
    for column, values in columns.items():
        distinct, inverse = np.unique(values.astype(str), return_inverse=True)
        if distinct.size > MAX_SLICE_VALUES or distinct.size < 2:
            continue
        n = np.bincount(inverse, minlength=distinct.size)
        hits = np.bincount(inverse, weights=correct.astype(np.float64), minlength=distinct.size)
        routed = np.bincount(inverse, weights=auto.astype(np.float64), minlength=distinct.size)
        routed_hits = np.bincount(
            inverse, weights=(auto & correct).astype(np.float64), minlength=distinct.size
        )
        for i, value in enumerate(distinct):
            out.append(
                SliceScore(
                    column=column,
                    value=str(value),
                    n=int(n[i]),
                    accuracy=float(hits[i] / n[i]),
                    auto_coverage=float(routed[i] / n[i]),
                    auto_precision=float(routed_hits[i] / routed[i]) if routed[i] else None,
                )
            )
    return out


def worst_slices(
    slices: Sequence[SliceScore], *, min_rows: int = MIN_SLICE_ROWS, limit: int = 5
) -> list[SliceScore]:
    eligible = [s for s in slices if s.n >= min_rows]
    return sorted(eligible, key=lambda s: (s.accuracy, -s.n))[:limit]


def example_errors(
    texts: Sequence[str],
    truth: Sequence[str],
    predicted: Sequence[str],
    confidence: np.ndarray,
    auto: np.ndarray,
    limit: int = 20,
) -> list[ExampleError]:
    """The most confident mistakes first: those are the ones that get routed without a person."""
    wrong = np.flatnonzero(np.asarray(truth, dtype=object) != np.asarray(predicted, dtype=object))
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [
        ExampleError(texts[i], truth[i], predicted[i], float(confidence[i]), "auto" if auto[i] else "human")
        for i in order
    ]


def as_dicts(rows: Sequence[object]) -> list[dict[str, object]]:
    return [asdict(row) for row in rows]  # type: ignore[call-overload]
