"""Datasets as the use cases take them: read and check against the contract, snapshot, split.

A dataset that breaks the contract raises :class:`~deskpilot.errors.ContractViolationError` carrying the full
validation report, so a command can show every located problem and a route can return them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deskpilot.config import Settings
from deskpilot.data.contracts import ValidationReport, contract_violation, validate_table
from deskpilot.data.io import RawTable, read_table
from deskpilot.data.snapshots import LABEL, TEXT, Snapshot, SnapshotStore
from deskpilot.data.splits import find_leakage, frozen_evaluation, split_around
from deskpilot.workflows.build import build_contract, build_redactor


@dataclass(frozen=True)
class CheckedTable:
    table: RawTable
    report: ValidationReport


def load_and_validate(
    settings: Settings,
    data: Path,
    *,
    text_column: str,
    label_column: str | None,
    max_text_length: int | None = None,
    min_per_class: int | None = None,
    labels_file: Path | None = None,
    max_examples: int | None = None,
) -> CheckedTable:
    """Read ``data`` and check it against the contract built from the options and settings (no raise on a
    broken contract: the report says it; see :func:`require_valid`)."""
    contract = build_contract(
        settings,
        text_column=text_column,
        label_column=label_column,
        max_text_length=max_text_length,
        min_per_class=min_per_class,
        labels_file=labels_file,
    )
    table = read_table(data)
    options = {} if max_examples is None else {"max_examples": max_examples}
    return CheckedTable(table, validate_table(table, contract, **options))


def require_valid(checked: CheckedTable, *, allow_invalid: bool = False) -> CheckedTable:
    """The checked table, or :class:`ContractViolationError` when it breaks the contract (unless allowed)."""
    if not checked.report.ok and not allow_invalid:
        raise contract_violation(checked.report)
    return checked


def store_snapshot(
    settings: Settings,
    checked: CheckedTable,
    *,
    pii_patterns: list[str] | None = None,
    drop_invalid: bool = False,
) -> Snapshot:
    """Redact and store a validated table as an immutable, content-addressed snapshot."""
    store = SnapshotStore(settings.snapshot_dir)
    return store.create(
        checked.table, checked.report, build_redactor(pii_patterns), drop_invalid=drop_invalid
    )


def split_summary(snapshot: Snapshot, *, seed: int, validation_fraction: float) -> dict[str, Any]:
    """The split of a snapshot (its lineage's frozen evaluation split, then train/validation for ``seed``)
    and the leakage check of the training side against the two held-out sides, as a printable mapping."""
    frame = snapshot.frame
    evaluation = frozen_evaluation(snapshot)
    split = split_around(
        frame, evaluation, digest=snapshot.digest, seed=seed, validation_fraction=validation_fraction
    )
    held_out = np.concatenate([split.validation, split.evaluation])
    leakage = find_leakage(frame[TEXT].iloc[split.train], frame[TEXT].iloc[held_out])
    validation_labels = frame[LABEL].iloc[split.validation].nunique()
    return {
        **split.summary(),
        "validation_labels": int(validation_labels),
        "evaluation_split": evaluation.record(),
        "leakage": leakage.to_dict(),
    }
