"""Use case: audit a dataset's labels (``deskpilot data audit-labels``).

The rows are read and checked against the contract, trimmed and redacted exactly as a snapshot stores them,
so the audit sees what training sees and the row ids it reports match the ids of a snapshot's rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deskpilot.config import Settings
from deskpilot.data.columns import classify, trimmed_labels
from deskpilot.data.splits import text_keys
from deskpilot.errors import EmptyDatasetError, UsageError
from deskpilot.evaluation.label_audit import DEFAULT_DUPLICATE_THRESHOLD, LabelAudit, audit_labels
from deskpilot.evaluation.label_audit_report import write_label_audit
from deskpilot.models.families import family_class, make_classifier
from deskpilot.training.run import ExcludedRows
from deskpilot.workflows.build import build_redactor
from deskpilot.workflows.datasets import load_and_validate, require_valid


@dataclass(frozen=True)
class LabelAuditRequest:
    data: Path
    text_column: str = "text"
    label_column: str = "label"
    family: str = "tfidf"
    params: dict[str, object] | None = None
    folds: int = 5
    seed: int = 0
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD
    pii_patterns: list[str] | None = None
    drop_invalid: bool = False
    report_dir: Path | None = None


@dataclass(frozen=True)
class LabelAuditOutcome:
    audit: LabelAudit
    report_files: dict[str, Path]


def run_label_audit(
    settings: Settings, request: LabelAuditRequest, *, progress: Callable[[str], None] | None = None
) -> LabelAuditOutcome:
    """Read, check and redact the data, score it out of fold, flag doubtful labels, write the report."""
    family_class(request.family)  # an unknown family fails before the data is read
    checked = require_valid(
        load_and_validate(
            settings, request.data, text_column=request.text_column, label_column=request.label_column
        ),
        allow_invalid=request.drop_invalid,
    )
    keep = ~checked.report.invalid_rows
    source = checked.table.frame.loc[keep]
    if source.empty:
        raise EmptyDatasetError(
            f"{request.data}: no valid rows to audit", details={"file": str(request.data)}
        )
    texts, _ = build_redactor(request.pii_patterns).redact_many(
        [str(t).strip() for t in source[request.text_column]]
    )
    labels = source[request.label_column]
    label_texts = [str(v) for v in trimmed_labels(labels, classify(labels))]
    params = dict(request.params or {})
    audit = audit_labels(
        texts,
        label_texts,
        locations=[int(v) for v in checked.table.locations[keep]],
        keys=[str(k) for k in text_keys(pd.Series(texts, dtype=object))],
        make_model=lambda: make_classifier(request.family, params, cache_dir=settings.encoder_cache_dir),
        family=request.family,
        folds=request.folds,
        seed=request.seed,
        duplicate_threshold=request.duplicate_threshold,
        progress=progress,
    )
    files = (
        write_label_audit(audit, request.report_dir, source=str(request.data))
        if request.report_dir is not None
        else {}
    )
    return LabelAuditOutcome(audit=audit, report_files=files)


def load_flagged(path: Path) -> ExcludedRows:
    """The rows a label audit's JSON (``--report DIR`` writes ``label_audit.json``; ``--json`` prints it)
    flags, as training leaves them out: each flagged row's text id with the label it was given."""
    try:
        raw = path.read_bytes()
        document = json.loads(raw)
    except OSError as exc:
        raise UsageError(f"--exclude-flagged {path}: cannot read it ({exc.strerror})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--exclude-flagged {path}: not JSON ({exc})") from exc
    flagged = document.get("flagged") if isinstance(document, dict) else None
    if not isinstance(flagged, list):
        raise UsageError(
            f"--exclude-flagged {path}: not a label audit (no 'flagged' list); "
            "write one with `deskpilot data audit-labels DATA --report DIR`"
        )
    pairs = set()
    for number, row in enumerate(flagged, start=1):
        key = row.get("key") if isinstance(row, dict) else None
        label = row.get("given_label") if isinstance(row, dict) else None
        if not isinstance(key, str) or not isinstance(label, str):
            raise UsageError(
                f"--exclude-flagged {path}: flagged entry {number} lacks a text 'key' or a 'given_label'"
            )
        pairs.add((key, label))
    note = {
        "source": str(path),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "flagged": len(pairs),
        "audited_rows": document.get("rows"),
        "audit_family": document.get("family"),
    }
    return ExcludedRows(pairs=frozenset(pairs), note=note)
