"""Splits of a snapshot: a frozen evaluation split per dataset lineage, then seeded, stratified
train/validation splits of the rest; and the leakage check between two sets of texts.

The evaluation split (ADR 0019) is chosen by a stable hash of each message's normalized text: per label, the
groups of equal normalized text with the lowest hashes, up to a fixed fraction of the label's rows. It is
carved once, from the first snapshot of a lineage, and a snapshot derived from it (the feedback loop's)
stores it in its ``deskpilot_split`` column, so every version of a lineage is measured on the same rows and
none trains on them. Its identity is a hash of its row ids (the hashes of the normalized texts).

The train/validation split of the remaining rows is a pure function of (snapshot digest, seed, fraction):
snapshots store rows in canonical order, and the random generator is seeded from both the seed and the
digest. Messages that are the same after normalization are kept on one side together, so near-duplicates
cannot leak from training into validation (or evaluation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deskpilot.data.text import normalize_texts
from deskpilot.errors import SnapshotCorruptError, UsageError

if TYPE_CHECKING:
    from deskpilot.data.snapshots import Snapshot

DEFAULT_VALIDATION_FRACTION = 0.2
DEFAULT_EVALUATION_FRACTION = 0.1
EVALUATION_METHOD = "label-hash-rank-v1"  # how the rows were chosen; a new method is a new name
MIN_GROUPS_LEFT = 2  # a label keeps at least this many distinct messages for training and validation
# A snapshot may store the side of each row (the feedback loop's snapshots do): its column and values.
SPLIT_COLUMN = "deskpilot_split"
TRAIN, VALIDATION, EVALUATION = "train", "validation", "evaluation"


@dataclass(frozen=True)
class Split:
    """Row positions (into the snapshot's canonical frame) of each side of a split."""

    digest: str
    seed: int
    validation_fraction: float
    train: np.ndarray
    validation: np.ndarray
    evaluation: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def summary(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
            "train_rows": int(self.train.size),
            "validation_rows": int(self.validation.size),
            "evaluation_rows": int(self.evaluation.size),
        }


@dataclass(frozen=True)
class EvaluationSplit:
    """The frozen evaluation rows of a snapshot, and what names them across the snapshots of a lineage.

    ``rows`` are positions in the snapshot's canonical frame; ``keys`` the row ids (hashes of the normalized
    texts) they hold; ``root`` the digest of the snapshot the split was carved from.
    """

    rows: np.ndarray
    keys: frozenset[str]
    root: str
    fraction: float
    method: str = EVALUATION_METHOD

    @property
    def identity(self) -> str:
        return keys_identity(self.keys)

    def record(self) -> dict[str, Any]:
        """What a model's lineage and a derived snapshot's metadata keep of it (JSON-safe)."""
        return {
            "identity": self.identity,
            "root": self.root,
            "fraction": self.fraction,
            "method": self.method,
            "rows": int(self.rows.size),
            "texts": len(self.keys),
        }


@dataclass(frozen=True)
class LeakageReport:
    """Normalized texts present on both sides, with how many rows of each side they cover."""

    overlapping_texts: int
    train_rows: int
    validation_rows: int
    examples: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return self.overlapping_texts == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "overlapping_texts": self.overlapping_texts,
            "train_rows": self.train_rows,
            "validation_rows": self.validation_rows,
            "examples": list(self.examples),
        }


def split_frame(
    frame: pd.DataFrame,
    *,
    digest: str,
    seed: int,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    text_column: str = "text",
    label_column: str = "label",
) -> Split:
    """Stratify by label, keep normalized duplicates together, hold out ``validation_fraction`` per label."""
    if not 0.0 < validation_fraction < 1.0:
        raise UsageError(f"the validation fraction must be between 0 and 1, not {validation_fraction}")
    groups = normalize_texts(frame[text_column])
    group_codes, group_keys = pd.factorize(groups, sort=True)
    labels = frame[label_column].to_numpy(dtype=object)
    first_row = pd.Series(np.arange(len(frame))).groupby(group_codes).min().to_numpy()
    group_label = labels[first_row]
    group_size = np.bincount(group_codes, minlength=len(group_keys))
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(digest[:16], 16)]))
    in_validation = np.zeros(len(group_keys), dtype=bool)
    for label in sorted(set(group_label)):
        members = np.flatnonzero(group_label == label)
        if members.size < 2:
            continue
        order = members[rng.permutation(members.size)]
        sizes = group_size[order]
        target = max(1, round(validation_fraction * sizes.sum()))
        take = int(np.searchsorted(np.cumsum(sizes), target) + 1)
        in_validation[order[: min(take, members.size - 1)]] = True
    row_in_validation = in_validation[group_codes]
    return Split(
        digest=digest,
        seed=seed,
        validation_fraction=validation_fraction,
        train=np.flatnonzero(~row_in_validation),
        validation=np.flatnonzero(row_in_validation),
    )


def text_keys(texts: pd.Series) -> np.ndarray:
    """Row ids: a stable 64-bit hash (hex) of each normalized text, so that messages differing only in case,
    punctuation or spacing share one id, in any snapshot, on any machine."""
    normalized = normalize_texts(texts)
    return np.array(
        [hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest() for t in normalized], dtype=object
    )


def keys_identity(keys: frozenset[str] | set[str]) -> str:
    """SHA-256 of the sorted row ids: equal for two splits exactly when they hold the same texts."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("ascii")).hexdigest()


def carve_evaluation(
    frame: pd.DataFrame,
    *,
    root: str,
    fraction: float = DEFAULT_EVALUATION_FRACTION,
    text_column: str = "text",
    label_column: str = "label",
) -> EvaluationSplit:
    """Per label, the groups of equal normalized text with the lowest row ids, until ``fraction`` of the
    label's rows is reached; a label keeps at least ``MIN_GROUPS_LEFT`` groups for training and validation.

    No seed: the same texts are chosen whatever the seed, the row order or the rest of the data, so two
    snapshots that share most of their texts share most of their evaluation rows too.
    """
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"the evaluation fraction must be between 0 and 1, not {fraction}")
    keys = text_keys(frame[text_column])
    group_codes, group_keys = pd.factorize(keys, sort=True)  # sorted: group order is row-id order
    labels = frame[label_column].to_numpy(dtype=object)
    first_row = pd.Series(np.arange(len(frame))).groupby(group_codes).min().to_numpy()
    group_label = labels[first_row]
    group_size = np.bincount(group_codes, minlength=len(group_keys))
    chosen = np.zeros(len(group_keys), dtype=bool)
    for label in sorted(set(group_label)):
        members = np.flatnonzero(group_label == label)  # ascending code = ascending row id
        if members.size <= MIN_GROUPS_LEFT:
            continue
        sizes = group_size[members]
        target = max(1, round(fraction * sizes.sum()))
        take = int(np.searchsorted(np.cumsum(sizes), target) + 1)
        chosen[members[: min(take, members.size - MIN_GROUPS_LEFT)]] = True
    rows = np.flatnonzero(chosen[group_codes])
    return EvaluationSplit(
        rows=rows, keys=frozenset(str(k) for k in group_keys[chosen]), root=root, fraction=fraction
    )


def frozen_evaluation(
    snapshot: Snapshot, *, fraction: float = DEFAULT_EVALUATION_FRACTION
) -> EvaluationSplit:
    """The evaluation split of ``snapshot``'s lineage: the rows its ``deskpilot_split`` column marks as
    evaluation (a snapshot derived from another keeps its root's), else carved from the snapshot itself
    (the first of its lineage, or one made before frozen splits existed)."""
    frame = snapshot.frame
    lineage = snapshot.metadata.lineage or {}
    recorded = lineage.get("evaluation")
    if SPLIT_COLUMN in frame.columns and isinstance(recorded, dict):
        rows = np.flatnonzero(frame[SPLIT_COLUMN].to_numpy(dtype=object) == EVALUATION)
        keys = frozenset(str(k) for k in text_keys(frame["text"].iloc[rows]))
        split = EvaluationSplit(
            rows=rows,
            keys=keys,
            root=str(recorded.get("root", snapshot.digest)),
            fraction=float(recorded.get("fraction", fraction)),
            method=str(recorded.get("method", EVALUATION_METHOD)),
        )
        if split.identity != recorded.get("identity"):
            raise SnapshotCorruptError(
                f"snapshot {snapshot.digest[:12]}: its evaluation rows are not the frozen split its lineage "
                "records",
                details={"expected": recorded.get("identity"), "actual": split.identity},
            )
        return split
    return carve_evaluation(frame, root=snapshot.digest, fraction=fraction)


def split_around(
    frame: pd.DataFrame,
    evaluation: EvaluationSplit,
    *,
    digest: str,
    seed: int,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> Split:
    """The seeded train/validation split of the rows outside ``evaluation``, with ``evaluation`` as the
    third side: positions are the snapshot's."""
    rest = np.setdiff1d(np.arange(len(frame)), evaluation.rows)
    inner = split_frame(
        frame.iloc[rest].reset_index(drop=True),
        digest=digest,
        seed=seed,
        validation_fraction=validation_fraction,
    )
    return Split(
        digest=digest,
        seed=seed,
        validation_fraction=validation_fraction,
        train=rest[inner.train],
        validation=rest[inner.validation],
        evaluation=evaluation.rows,
    )


def find_leakage(
    train_texts: pd.Series, validation_texts: pd.Series, *, max_examples: int = 10
) -> LeakageReport:
    """Texts that occur on both sides once normalized: the overlap that inflates validation scores."""
    train_norm = normalize_texts(train_texts)
    validation_norm = normalize_texts(validation_texts)
    shared = pd.Index(train_norm.unique()).intersection(pd.Index(validation_norm.unique()))
    return LeakageReport(
        overlapping_texts=len(shared),
        train_rows=int(train_norm.isin(shared).sum()),
        validation_rows=int(validation_norm.isin(shared).sum()),
        examples=tuple(sorted(shared)[:max_examples]),
    )
