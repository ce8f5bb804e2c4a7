"""The next snapshot of the loop: the champion's rows, relabelled where the guard accepted a flip, plus the
accepted new rows, each with the side of the split it belongs to.

Old rows keep the side the champion trained them on and new rows get a seeded, stratified split of their
own, so the validation side holds only rows neither the champion nor its successor trained on (ADR 0014).
The side and where each row came from are stored as columns, so the split of a snapshot made here is part
of its content (and digest) and the next round reads it back instead of recomputing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.data.snapshots import LABEL, TEXT, Snapshot, content_digest
from deskpilot.data.splits import Split, split_frame
from deskpilot.data.text import normalize_texts
from deskpilot.errors import SnapshotError
from deskpilot.workflows.feedback.guard import Change

SPLIT_COLUMN = "deskpilot_split"
ORIGIN_COLUMN = "deskpilot_origin"
TRAIN, VALIDATION = "train", "validation"
FROM_SNAPSHOT, FROM_FEEDBACK, FLIPPED = "snapshot", "feedback", "flipped"


def model_split(snapshot: Snapshot, lineage: dict[str, Any]) -> Split:
    """The split a model was trained on, from its lineage: a stored split read back, else recomputed from
    (digest, seed, fraction) exactly as training computed it."""
    note = lineage.get("split")
    seed = int(lineage.get("seed", 0))
    fraction = float(lineage.get("validation_fraction", 0.2))
    if isinstance(note, dict) and note.get("column") == SPLIT_COLUMN:
        return stored_split(snapshot, seed=seed, validation_fraction=fraction)
    return split_frame(snapshot.frame, digest=snapshot.digest, seed=seed, validation_fraction=fraction)


def stored_split(snapshot: Snapshot, *, seed: int, validation_fraction: float) -> Split:
    frame = snapshot.frame
    if SPLIT_COLUMN not in frame.columns:
        raise SnapshotError(
            f"snapshot {snapshot.digest[:12]} has no {SPLIT_COLUMN!r} column, yet its model's lineage says "
            "its split is stored there"
        )
    side = frame[SPLIT_COLUMN].to_numpy(dtype=object)
    return Split(
        digest=snapshot.digest,
        seed=seed,
        validation_fraction=validation_fraction,
        train=np.flatnonzero(side == TRAIN),
        validation=np.flatnonzero(side == VALIDATION),
    )


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
) -> pd.DataFrame:
    """The parent's rows with their sides and the accepted changes applied; the new rows split by
    (their content, ``seed``)."""
    frame = parent.frame.copy()
    side = np.full(len(frame), TRAIN, dtype=object)
    side[parent_split.validation] = VALIDATION
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
