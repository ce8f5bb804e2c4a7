"""Seeded, stratified train/validation splits of a snapshot, and the leakage check between two splits.

The split is a pure function of (snapshot digest, seed, fraction): snapshots store rows in canonical order,
and the random generator is seeded from both the seed and the digest. Messages that are the same after
normalization are kept in one split together, so near-duplicates cannot leak from training into validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.data.text import normalize_texts
from deskpilot.errors import UsageError

DEFAULT_VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Row positions (into the snapshot's canonical frame) of each side of a split."""

    digest: str
    seed: int
    validation_fraction: float
    train: np.ndarray
    validation: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
            "train_rows": int(self.train.size),
            "validation_rows": int(self.validation.size),
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
