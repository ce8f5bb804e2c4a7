"""Label audit: rows whose label is likely wrong, and near-identical messages filed under different labels.

Likely mislabelled rows come from confident learning (cleanlab) on out-of-fold probabilities: every row is
scored by a model that never saw it, cleanlab estimates the joint distribution of given and true labels from
those scores and flags the rows the estimate says are off-diagonal, ranked by self-confidence (the
probability the out-of-fold model gives the row's own label). Conflicts are pairs of messages whose
character n-gram TF-IDF vectors are nearly parallel (cosine ≥ threshold) yet carry different labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold

from deskpilot.data.text import normalize_texts
from deskpilot.errors import UsageError
from deskpilot.models.base import Classifier

#: Cosine similarity of character 3-5-gram TF-IDF vectors from which two messages count as near-duplicates.
DEFAULT_DUPLICATE_THRESHOLD = 0.9
_SIMILARITY_CELLS = 2_000_000  # similarities computed per block: bounds the memory of the product


@dataclass(frozen=True)
class FlaggedRow:
    """A row whose given label the out-of-fold model and cleanlab doubt, with the label they suggest."""

    index: int  # 0-based position in the audited rows
    location: int  # 1-based line (text formats) or row (Parquet) in the source file
    key: str  # stable id of the normalised text (train --exclude-flagged matches on it)
    text: str  # redacted
    given_label: str
    suggested_label: str
    self_confidence: float  # out-of-fold probability of the given label
    suggested_confidence: float  # out-of-fold probability of the suggested label


@dataclass(frozen=True)
class LabelConflict:
    """Two near-identical messages with different labels."""

    first: int
    second: int
    first_location: int
    second_location: int
    first_text: str
    second_text: str
    first_label: str
    second_label: str
    similarity: float


@dataclass(frozen=True)
class LabelAudit:
    """What the audit found in one dataset, and how it looked."""

    rows: int
    labels: int
    folds: int
    family: str
    seed: int
    out_of_fold_accuracy: float
    duplicate_threshold: float
    flagged: list[FlaggedRow]
    conflicts: list[LabelConflict]
    flagged_by_label: dict[str, int] = field(default_factory=dict)

    @property
    def flagged_share(self) -> float:
        return len(self.flagged) / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "labels": self.labels,
            "folds": self.folds,
            "family": self.family,
            "seed": self.seed,
            "out_of_fold_accuracy": self.out_of_fold_accuracy,
            "duplicate_threshold": self.duplicate_threshold,
            "flagged_count": len(self.flagged),
            "flagged_share": self.flagged_share,
            "conflict_count": len(self.conflicts),
            "flagged_by_label": self.flagged_by_label,
            "flagged": [asdict(row) for row in self.flagged],
            "conflicts": [asdict(pair) for pair in self.conflicts],
        }


def fold_count(labels: Sequence[str], requested: int) -> int:
    """Folds for a stratified split: ``requested``, fewer when a label has fewer rows; at least 2."""
    if requested < 2:
        raise UsageError(f"--folds {requested}: out-of-fold scoring needs at least 2 folds")
    _, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    if len(counts) < 2:
        raise UsageError("a label audit needs at least two labels")
    smallest = int(counts.min())
    if smallest < 2:
        names, sizes = np.unique(np.asarray(labels, dtype=object), return_counts=True)
        rare = sorted(str(label) for label, n in zip(names, sizes, strict=True) if n < 2)
        raise UsageError(
            f"labels with a single row cannot be scored out of fold: {', '.join(rare[:10])}",
            details={"labels": rare},
        )
    return min(requested, smallest)


def out_of_fold_probabilities(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    make_model: Callable[[], Classifier],
    folds: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's probabilities from a model fitted on the other folds; columns follow the sorted labels."""
    text_array = np.asarray(texts, dtype=object)
    label_array = np.asarray(labels, dtype=object)
    classes = np.unique(label_array)
    column = {label: i for i, label in enumerate(classes)}
    probabilities = np.zeros((len(text_array), len(classes)), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, held_out) in enumerate(splitter.split(text_array, label_array), start=1):
        if progress is not None:
            progress(f"fold {fold}/{folds}: fitting on {len(train):,} rows, scoring {len(held_out):,}")
        model = make_model().fit(list(text_array[train]), list(label_array[train]))
        scores = model.predict_proba(list(text_array[held_out]))
        columns = [column[str(label)] for label in model.classes_]
        probabilities[np.ix_(held_out, columns)] = scores
    return probabilities, classes


def find_flagged(
    labels: Sequence[str], probabilities: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices cleanlab flags (most doubtful first) and every row's self-confidence."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    column = {label: i for i, label in enumerate(classes)}
    given = np.array([column[label] for label in labels], dtype=np.int64)
    quality = get_label_quality_scores(given, probabilities, method="self_confidence")
    ranked = find_label_issues(
        given,
        probabilities,
        filter_by="prune_by_noise_rate",
        return_indices_ranked_by="self_confidence",
    )
    return np.asarray(ranked, dtype=np.int64), np.asarray(quality, dtype=np.float64)


def near_duplicate_conflicts(
    texts: Sequence[str], labels: Sequence[str], *, threshold: float = DEFAULT_DUPLICATE_THRESHOLD
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with ``i < j``, different labels and cosine ≥ ``threshold``, most similar
    first. Texts are folded first (case, punctuation, spacing), so such variants have cosine 1."""
    if not 0.0 < threshold <= 1.0:
        raise UsageError(f"--duplicate-threshold {threshold}: expected a cosine in (0, 1]")
    if len(texts) < 2:
        return []
    folded = normalize_texts(pd.Series(list(texts), dtype=object)).tolist()
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(folded)
    label_array = np.asarray(labels, dtype=object)
    pairs: list[tuple[int, int, float]] = []
    step = max(1, _SIMILARITY_CELLS // vectors.shape[0])
    for start in range(0, vectors.shape[0], step):
        block = (vectors[start : start + step] @ vectors.T).tocoo()
        rows = block.row + start
        keep = (rows < block.col) & (block.data >= threshold - 1e-9)
        for i, j, similarity in zip(rows[keep], block.col[keep], block.data[keep], strict=True):
            if label_array[i] != label_array[j]:
                pairs.append((int(i), int(j), min(1.0, float(similarity))))
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return pairs


def audit_labels(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    locations: Sequence[int],
    keys: Sequence[str],
    make_model: Callable[[], Classifier],
    family: str,
    folds: int = 5,
    seed: int = 0,
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    progress: Callable[[str], None] | None = None,
) -> LabelAudit:
    """Score every row out of fold, flag the likely mislabelled ones, list the conflicting near-duplicates."""
    labels = [str(label) for label in labels]
    used_folds = fold_count(labels, folds)
    probabilities, classes = out_of_fold_probabilities(
        texts, labels, make_model=make_model, folds=used_folds, seed=seed, progress=progress
    )
    if progress is not None:
        progress("confident learning over the out-of-fold probabilities")
    ranked, self_confidence = find_flagged(labels, probabilities, classes)
    suggested = probabilities.argmax(axis=1)
    flagged = [
        FlaggedRow(
            index=int(i),
            location=int(locations[i]),
            key=str(keys[i]),
            text=str(texts[i]),
            given_label=labels[i],
            suggested_label=str(classes[suggested[i]]),
            self_confidence=round(float(self_confidence[i]), 6),
            suggested_confidence=round(float(probabilities[i, suggested[i]]), 6),
        )
        for i in ranked
    ]
    if progress is not None:
        progress("looking for near-duplicate messages with different labels")
    conflicts = [
        LabelConflict(
            first=i,
            second=j,
            first_location=int(locations[i]),
            second_location=int(locations[j]),
            first_text=str(texts[i]),
            second_text=str(texts[j]),
            first_label=labels[i],
            second_label=labels[j],
            similarity=round(similarity, 6),
        )
        for i, j, similarity in near_duplicate_conflicts(texts, labels, threshold=duplicate_threshold)
    ]
    by_label: dict[str, int] = {}
    for row in flagged:
        by_label[row.given_label] = by_label.get(row.given_label, 0) + 1
    accuracy = float(np.mean(classes[suggested] == np.asarray(labels, dtype=object)))
    return LabelAudit(
        rows=len(labels),
        labels=len(classes),
        folds=used_folds,
        family=family,
        seed=seed,
        out_of_fold_accuracy=round(accuracy, 6),
        duplicate_threshold=duplicate_threshold,
        flagged=flagged,
        conflicts=conflicts,
        flagged_by_label=dict(sorted(by_label.items(), key=lambda item: (-item[1], item[0]))),
    )
