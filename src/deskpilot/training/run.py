"""Train one model family on a snapshot and measure it on the snapshot's validation split.

Three sides (ADR 0019): the frozen evaluation split of the snapshot's lineage, which no version trains or
tunes on and the gate compares on; then, of the remaining rows, a seeded train/validation split. The split
is a pure function of (snapshot, seed, fraction); so are the seeds of every random step here, so the same
data, seed and configuration give the same validation metrics. A caller may hand over a split it made itself
(:class:`PresetSplit`: the feedback loop keeps the champion's sides); its note is recorded in the lineage as
``split``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.data.snapshots import LABEL, TEXT, Snapshot
from deskpilot.data.splits import (
    DEFAULT_VALIDATION_FRACTION,
    MIN_GROUPS_LEFT,
    EvaluationSplit,
    Split,
    frozen_evaluation,
    split_around,
    text_keys,
)
from deskpilot.errors import TrainingError, UsageError
from deskpilot.evaluation.metrics import classification_metrics
from deskpilot.evaluation.selective import DEFAULT_TARGET_PRECISION, pick_threshold
from deskpilot.models.artifact import TriageModel
from deskpilot.models.base import Classifier
from deskpilot.models.families import make_classifier
from deskpilot.monitoring.profile import Embedder, build_profile

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PresetSplit:
    """A split decided by the caller, and how it was made (a JSON-safe note kept in the lineage)."""

    split: Split
    note: dict[str, Any]


@dataclass(frozen=True)
class ExcludedRows:
    """Rows kept out of the training side (``train --exclude-flagged``): (text id, given label) pairs, and
    where they came from (a JSON-safe note kept in the lineage). Validation and evaluation rows stay, so a
    model trained without them is measured on the same rows as one trained with them."""

    pairs: frozenset[tuple[str, str]]
    note: dict[str, Any]


@dataclass(frozen=True)
class TrainingConfig:
    family: str
    seed: int = 0
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    target_precision: float = DEFAULT_TARGET_PRECISION
    params: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None  # where exported encoders are cached; not a hyperparameter
    split: PresetSplit | None = field(default=None, compare=False, repr=False)  # None: seeded split
    exclude: ExcludedRows | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TrainingResult:
    model: TriageModel
    metrics: dict[str, float]
    split: Split
    fit_seconds: float


def build_classifier(config: TrainingConfig) -> Classifier:
    try:
        return make_classifier(config.family, config.params, cache_dir=config.cache_dir)
    except TypeError as exc:
        raise TrainingError(f"bad parameters for the {config.family} family: {exc}") from exc


def train_on_snapshot(
    snapshot: Snapshot,
    config: TrainingConfig,
    *,
    classifier: Classifier | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Fit on the training side, calibrate and pick the routing threshold on the validation side."""
    say = progress or (lambda _message: None)
    random.seed(config.seed)
    np.random.seed(config.seed)  # third-party code may still draw from the global generator
    frame = snapshot.frame
    evaluation = frozen_evaluation(snapshot)
    if evaluation.rows.size == 0:
        raise TrainingError(
            f"snapshot {snapshot.digest[:12]} has no label with more than {MIN_GROUPS_LEFT} distinct "
            "messages, so no evaluation split can be held out: add examples"
        )
    if config.split is None:
        split = split_around(
            frame,
            evaluation,
            digest=snapshot.digest,
            seed=config.seed,
            validation_fraction=config.validation_fraction,
        )
    else:
        split = checked_split(config.split.split, snapshot, evaluation)
    train_rows = split.train
    matched = 0
    if config.exclude is not None:
        matched = _matched_flags(frame, config.exclude)
        train_rows = _without_excluded(frame, train_rows, config.exclude)
        say(
            f"leave out {split.train.size - train_rows.size:,} flagged training rows "
            f"({matched:,} of the audit's {len(config.exclude.pairs):,} flagged rows match this data)"
        )
    train_texts = frame[TEXT].iloc[train_rows].tolist()
    train_labels = frame[LABEL].iloc[train_rows].tolist()
    val_texts = frame[TEXT].iloc[split.validation].tolist()
    val_labels = frame[LABEL].iloc[split.validation].tolist()
    if len(set(train_labels)) < 2:
        raise TrainingError("the training split has fewer than two labels; a classifier needs at least two")
    model = classifier if classifier is not None else build_classifier(config)
    say(f"fit {config.family} on {len(train_texts):,} messages ({len(set(train_labels))} labels)")
    started = time.perf_counter()
    model.fit(train_texts, train_labels, validation=(val_texts, val_labels))
    fit_seconds = time.perf_counter() - started
    say(f"calibrate on {len(val_texts):,} validation messages")
    model.calibrate(val_texts, val_labels)
    probs = model.predict_proba(val_texts)
    classes = [str(c) for c in model.classes_]
    metrics = classification_metrics(val_labels, probs, classes, target_precision=config.target_precision)
    confidence = probs.max(axis=1)
    correct = np.asarray(classes, dtype=object)[probs.argmax(axis=1)] == np.asarray(val_labels, dtype=object)
    routing = pick_threshold(confidence, correct, config.target_precision)
    metrics = {**metrics, "temperature": model.temperature_, "fit_seconds": fit_seconds}
    lineage = {
        "dataset_digest": snapshot.digest,
        "source_file": snapshot.metadata.source_file,
        "seed": config.seed,
        "validation_fraction": config.validation_fraction,
        "train_rows": int(train_rows.size),
        "validation_rows": int(split.validation.size),
        "evaluation_rows": int(split.evaluation.size),
        "evaluation_split": evaluation.record(),
        "params": model.get_params(),
    }
    if config.split is not None:
        lineage["split"] = config.split.note
    if config.exclude is not None:
        lineage["excluded"] = {
            **config.exclude.note,
            "matched": matched,
            "train_rows_left_out": int(split.train.size - train_rows.size),
        }
    say("profile the reference data for the monitor")
    reference = build_profile(
        classes=classes,
        routing_threshold=routing.threshold,
        validation_labels=val_labels,
        validation_probs=probs,
        texts=train_texts + val_texts,
        train_texts=train_texts,
        validation_texts=val_texts,
        embedder=model if isinstance(model, Embedder) else None,
        seed=config.seed,
    )
    triage = TriageModel.build(
        model, routing, lineage=lineage, metrics=metrics, reference=reference.to_dict()
    )
    return TrainingResult(model=triage, metrics=metrics, split=split, fit_seconds=fit_seconds)


def _matched_flags(frame: pd.DataFrame, exclude: ExcludedRows) -> int:
    """How many of the flagged (text id, label) pairs are rows of ``frame``; a usage error when none is:
    the audit was of other data, and leaving nothing out silently would pretend otherwise."""
    present = set(zip(text_keys(frame[TEXT]), frame[LABEL].astype(str), strict=True))
    matched = len(exclude.pairs & present)
    if exclude.pairs and matched == 0:
        source = exclude.note.get("source", "the label audit")
        raise UsageError(
            f"--exclude-flagged {source}: none of its {len(exclude.pairs):,} flagged rows (text and given "
            "label) is a row of this data; was the audit run on another file?",
            details={"file": str(source), "flagged": len(exclude.pairs)},
        )
    return matched


def _without_excluded(frame: pd.DataFrame, rows: np.ndarray, exclude: ExcludedRows) -> np.ndarray:
    """``rows`` minus those whose (text id, label) is excluded."""
    keys = text_keys(frame[TEXT].iloc[rows])
    labels = frame[LABEL].iloc[rows].astype(str).to_numpy()
    keep = np.array(
        [(k, label) not in exclude.pairs for k, label in zip(keys, labels, strict=True)], dtype=bool
    )
    kept: np.ndarray = rows[keep]
    return kept


def checked_split(split: Split, snapshot: Snapshot, evaluation: EvaluationSplit) -> Split:
    """``split`` when it is one of this snapshot: every row on exactly one side, train and validation
    non-empty, and the evaluation side exactly the lineage's frozen evaluation rows."""
    rows = len(snapshot.frame)
    if split.digest != snapshot.digest:
        raise TrainingError(
            f"the split given is of snapshot {split.digest[:12]}, not of {snapshot.digest[:12]}"
        )
    if not np.array_equal(np.sort(split.evaluation), evaluation.rows):
        raise TrainingError(
            "the split given does not hold out the frozen evaluation split of snapshot "
            f"{snapshot.digest[:12]} ({evaluation.rows.size:,} rows); no version may train on those rows"
        )
    sides = np.concatenate([split.train, split.validation, split.evaluation])
    if split.train.size == 0 or split.validation.size == 0:
        raise TrainingError("a preset split needs rows on both sides (train and validation)")
    if sides.size != rows or np.unique(sides).size != rows or sides.min() < 0 or sides.max() >= rows:
        raise TrainingError(
            f"the split given does not put each of the snapshot's {rows:,} rows on exactly one side"
        )
    return split
