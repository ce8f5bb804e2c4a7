"""Which rows a registered model trained on, rebuilt from its lineage, so that a gate compares two models
only on rows neither of them saw (ADR 0019).

A model with a frozen evaluation split (its lineage's ``evaluation_split``) saw every row of its snapshot
outside that split: it was fit on the training side and tuned (calibration, threshold, early stopping,
member weights) on the validation side. A model trained before frozen splits existed saw its training side,
recomputed from (digest, seed, fraction) or read back from the snapshot's stored column, as ADR 0014 did.
What a model saw is a set of row ids (hashes of normalized texts), so it applies to any rows: the challenger's
evaluation split, or a file given to ``deskpilot gate --data``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from deskpilot.data.snapshots import TEXT, Snapshot, SnapshotStore
from deskpilot.data.splits import (
    DEFAULT_EVALUATION_FRACTION,
    SPLIT_COLUMN,
    TRAIN,
    VALIDATION,
    EvaluationSplit,
    Split,
    frozen_evaluation,
    split_around,
    split_frame,
    text_keys,
)
from deskpilot.errors import SnapshotError, SnapshotNotFoundError

SnapshotLookup = Callable[[str], Snapshot | None]  # digest -> the snapshot, or None when it is not here


def model_split(snapshot: Snapshot, lineage: Mapping[str, Any]) -> Split:
    """The split a model was trained on, from its lineage: a stored split read back, else recomputed from
    (digest, seed, fraction) exactly as training computed it (around the frozen evaluation split when the
    lineage records one)."""
    note = lineage.get("split")
    seed = int(lineage.get("seed", 0))
    fraction = float(lineage.get("validation_fraction", 0.2))
    if isinstance(note, dict) and note.get("column") == SPLIT_COLUMN:
        return stored_split(snapshot, seed=seed, validation_fraction=fraction)
    frame = snapshot.frame
    record = lineage.get("evaluation_split")
    if isinstance(record, dict):
        evaluation = rebuilt_evaluation(snapshot, lineage)
        return split_around(
            frame, evaluation, digest=snapshot.digest, seed=seed, validation_fraction=fraction
        )
    return split_frame(frame, digest=snapshot.digest, seed=seed, validation_fraction=fraction)


def stored_split(snapshot: Snapshot, *, seed: int, validation_fraction: float) -> Split:
    """The sides a snapshot stores in its ``deskpilot_split`` column (train, validation, evaluation)."""
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
        evaluation=np.flatnonzero(~np.isin(side, [TRAIN, VALIDATION])),
    )


def _fraction(record: Mapping[str, Any]) -> float:
    return float(record.get("fraction", DEFAULT_EVALUATION_FRACTION))


IDENTITY_MISMATCH = "identity mismatch"


def rebuilt_evaluation(snapshot: Snapshot, lineage: Mapping[str, Any]) -> EvaluationSplit:
    """The frozen evaluation split a model with ``lineage`` was held out from, recomputed from its snapshot;
    a :class:`SnapshotError` when the recomputed split is not the one its lineage records (another method,
    normalization or fraction than the model's): its sides cannot be rebuilt then."""
    record = lineage.get("evaluation_split")
    fraction = _fraction(record) if isinstance(record, dict) else DEFAULT_EVALUATION_FRACTION
    split = frozen_evaluation(snapshot, fraction=fraction)
    recorded = evaluation_identity(lineage)
    if recorded is not None and split.identity != recorded:
        raise SnapshotError(
            f"snapshot {snapshot.digest[:12]}: the evaluation split rebuilt from it is not the one the "
            f"model's lineage records ({IDENTITY_MISMATCH})",
            details={"expected": recorded, "actual": split.identity},
        )
    return split


def evaluation_identity(lineage: Mapping[str, Any]) -> str | None:
    """The identity of the frozen evaluation split a model was held out from; None before frozen splits."""
    record = lineage.get("evaluation_split")
    if isinstance(record, dict) and isinstance(record.get("identity"), str):
        return str(record["identity"])
    return None


@dataclass(frozen=True)
class Seen:
    """The row ids a model trained or was tuned on; ``keys`` is None when they cannot be known here."""

    keys: frozenset[str] | None
    identity: str | None  # its frozen evaluation split's identity, when it has one
    why_unknown: str = ""

    def mask(self, row_keys: np.ndarray) -> np.ndarray | None:
        """Which of the rows (given by their ids) the model saw; None when that is unknown."""
        if self.keys is None:
            return None
        return np.fromiter((key in self.keys for key in row_keys), dtype=bool, count=len(row_keys))


def seen_by(lineage: Mapping[str, Any], snapshots: SnapshotLookup) -> Seen:
    """What a model saw, from its lineage and its snapshot (looked up by digest)."""
    identity = evaluation_identity(lineage)
    digest = str(lineage.get("dataset_digest") or "")
    snapshot = snapshots(digest) if digest else None
    if snapshot is None:
        why = f"its snapshot {digest[:12] or '(none recorded)'} is not here"
        return Seen(None, identity, why)
    frame = snapshot.frame
    keys = text_keys(frame[TEXT])
    try:
        if identity is not None:
            held_out = rebuilt_evaluation(snapshot, lineage)
            trained = ~np.isin(np.arange(len(frame)), held_out.rows)
        else:
            trained = np.isin(np.arange(len(frame)), model_split(snapshot, lineage).train)
    except SnapshotError as exc:  # never guess: rows it may have seen must not be counted unseen
        why = IDENTITY_MISMATCH if IDENTITY_MISMATCH in str(exc) else str(exc)
        return Seen(None, identity, f"its split cannot be rebuilt: {why}")
    return Seen(frozenset(str(k) for k in keys[trained]), identity)


def store_lookup(store: SnapshotStore) -> SnapshotLookup:
    """Snapshots by digest from a store; None for one that is not there."""

    def find(digest: str) -> Snapshot | None:
        try:
            return store.get(digest)
        except SnapshotNotFoundError:
            return None

    return find
