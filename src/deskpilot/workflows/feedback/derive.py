"""The next snapshot of the loop: the champion's rows, relabelled where the guard accepted a flip, plus the
accepted new rows, each with the side of the split it belongs to.

The lineage's frozen evaluation split (ADR 0019) stays what it was: rows of it keep the ``evaluation`` side,
so no version of the lineage trains on them and every one is gated on them. Other old rows keep the side the
champion trained them on, and new rows get a seeded, stratified train/validation split of their own (ADR
0014). The side and where each row came from are stored as columns, so the split of a snapshot made here is
part of its content (and digest) and the next round reads it back instead of recomputing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from deskpilot.data.snapshots import LABEL, TEXT, Snapshot, content_digest
from deskpilot.data.splits import (
    EVALUATION,
    SPLIT_COLUMN,
    TRAIN,
    VALIDATION,
    EvaluationSplit,
    Split,
    split_frame,
    text_keys,
)
from deskpilot.data.text import normalize_texts
from deskpilot.training.seen import model_split, stored_split
from deskpilot.workflows.feedback.guard import Change

__all__ = [
    "EVALUATION",
    "FLIPPED",
    "FROM_FEEDBACK",
    "FROM_SNAPSHOT",
    "ORIGIN_COLUMN",
    "SPLIT_COLUMN",
    "TRAIN",
    "VALIDATION",
    "derive_frame",
    "label_index",
    "model_split",
    "side_counts",
    "stored_split",
]

ORIGIN_COLUMN = "deskpilot_origin"
FROM_SNAPSHOT, FROM_FEEDBACK, FLIPPED = "snapshot", "feedback", "flipped"


def label_index(frame: pd.DataFrame) -> dict[str, frozenset[str]]:
    """Normalized text -> the labels the snapshot gives it (one, unless near-duplicates disagree)."""
    keys = normalize_texts(frame[TEXT])
    grouped = pd.Series(frame[LABEL].astype(str).to_numpy(), index=keys.to_numpy()).groupby(level=0)
    return {str(key): frozenset(labels) for key, labels in grouped}


def derive_frame(
    parent: Snapshot,
    parent_split: Split,
    changes: Sequence[Change],
    *,
    seed: int,
    validation_fraction: float,
    evaluation: EvaluationSplit,
) -> pd.DataFrame:
    """The parent's rows with their sides and the accepted changes applied: ``evaluation`` (the lineage's
    frozen split) keeps its rows, and the new rows are split by (their content, ``seed``)."""
    frame = parent.frame.copy()
    side = np.full(len(frame), TRAIN, dtype=object)
    side[parent_split.validation] = VALIDATION
    side[evaluation.rows] = EVALUATION
    frame[SPLIT_COLUMN] = side
    if ORIGIN_COLUMN not in frame.columns:
        frame[ORIGIN_COLUMN] = FROM_SNAPSHOT
    flips = {change.key: change.label for change in changes if change.flip}
    if flips:
        keys = normalize_texts(frame[TEXT])
        hit = keys.isin(list(flips)).to_numpy()
        frame.loc[hit, LABEL] = keys[hit].map(flips).to_numpy()
        frame.loc[hit, ORIGIN_COLUMN] = FLIPPED
    added = [change for change in changes if not change.flip]
    if not added:
        return frame
    rows = pd.DataFrame({TEXT: [c.text for c in added], LABEL: [c.label for c in added]}, dtype=object)
    split = split_frame(rows, digest=content_digest(rows), seed=seed, validation_fraction=validation_fraction)
    rows_side = np.full(len(rows), TRAIN, dtype=object)
    rows_side[split.validation] = VALIDATION
    held_out = np.fromiter(
        (key in evaluation.keys for key in text_keys(rows[TEXT])), dtype=bool, count=len(rows)
    )
    rows_side[held_out] = EVALUATION  # a text of the evaluation split stays there, however it is written
    for column in frame.columns:
        if column not in rows.columns:
            rows[column] = ""  # the parent's extra columns: unknown for feedback
    rows[SPLIT_COLUMN] = rows_side
    rows[ORIGIN_COLUMN] = FROM_FEEDBACK
    return pd.concat([frame, rows[list(frame.columns)]], ignore_index=True)


def side_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per origin on each side of the split."""
    counts: dict[str, dict[str, int]] = {}
    pairs = zip(frame[SPLIT_COLUMN].astype(str), frame[ORIGIN_COLUMN].astype(str), strict=True)
    for side, origin in pairs:
        counts.setdefault(side, {}).setdefault(origin, 0)
        counts[side][origin] += 1
    return {side: dict(sorted(found.items())) for side, found in sorted(counts.items())}
