"""Resolved tickets as knowledge items, from any file the data contract reads (CSV, TSV, JSONL, Parquet).

Rows are checked by the same contract as training data (``deskpilot.data.contracts``), so a ticket file that
``deskpilot validate`` accepts imports too, and a bad row is refused the same way: the error names the file,
the line as an editor shows it (the header is line 1) or the Parquet row, the column and the reason. A whole
file is refused rather than imported in part, so that a fixed file re-imports to the same items. Identical
texts with different labels are allowed here (a knowledge base records what happened, not a training set).

Two rows with the same id (the ``id_column``'s value, or the digest of identical texts) keep the last row,
the way a later export line updates a ticket; :func:`load_tickets` counts the rows so replaced.

The texts are NOT PII-redacted here; the import workflow redacts them before anything is stored or indexed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deskpilot.data.columns import as_strings, classify, trimmed_labels
from deskpilot.data.contracts import (
    DataContract,
    ValidationReport,
    Violation,
    check_columns,
    validate_table,
)
from deskpilot.data.io import RawTable, read_table
from deskpilot.errors import ContractViolationError, MissingColumnError
from deskpilot.retrieval.items import KnowledgeItem

# Rules that do not stop an import: repeated texts are legitimate in a ticket history.
_TOLERATED_RULES = frozenset({"conflicting_duplicate", "duplicate_text"})
_SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class TicketLoad:
    """The tickets read from one file, with how many rows it had and how many a later row replaced."""

    items: list[KnowledgeItem]
    rows: int
    replaced: int


def ticket_digest(text: str) -> str:
    """The id of a ticket whose source has none: stable across imports of the same (trimmed) text."""
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_tickets(
    path: Path | str,
    *,
    tenant: str,
    text_column: str = "text",
    label_column: str = "label",
    reply_column: str | None = None,
    id_column: str | None = None,
) -> list[KnowledgeItem]:
    """Resolved tickets (kind ``"ticket"``, intents ``(label,)``), NOT yet PII-redacted; see
    :func:`load_tickets`."""
    return load_tickets(
        path,
        tenant=tenant,
        text_column=text_column,
        label_column=label_column,
        reply_column=reply_column,
        id_column=id_column,
    ).items


def load_tickets(
    path: Path | str,
    *,
    tenant: str,
    text_column: str = "text",
    label_column: str = "label",
    reply_column: str | None = None,
    id_column: str | None = None,
) -> TicketLoad:
    """Read and check a ticket file; any bad row refuses the file (:class:`ContractViolationError`)."""
    table = read_table(path)
    contract = DataContract(
        text_column=text_column,
        label_column=label_column,
        max_text_length=np.iinfo(np.int64).max,
        min_examples_per_class=1,
        min_classes=1,
    )
    check_columns(table, contract)
    _check_optional_columns(table, [c for c in (reply_column, id_column) if c is not None])
    report = validate_table(table, contract, max_examples=_SHOWN_PROBLEMS)
    problems = [v for rule in report.errors if rule.rule not in _TOLERATED_RULES for v in rule.examples]
    if problems:
        n_rules = sum(r.count for r in report.errors if r.rule not in _TOLERATED_RULES)
        raise _refusal(table, problems, n_rules, report)
    texts = as_strings(table.frame[text_column], classify(table.frame[text_column]).is_str).str.strip()
    labels = trimmed_labels(table.frame[label_column], classify(table.frame[label_column]))
    replies = _optional_strings(table, reply_column, required=False) if reply_column else None
    ids = _optional_strings(table, id_column, required=True) if id_column else None
    kept: dict[str, tuple[int, KnowledgeItem]] = {}
    for position, (text, label) in enumerate(zip(texts.tolist(), labels.tolist(), strict=True)):
        item_id = ids[position] if ids is not None else None
        item = KnowledgeItem(
            id=item_id or ticket_digest(text),
            tenant=tenant,
            kind="ticket",
            text=text,
            intents=(label,),
            reply=replies[position] if replies is not None else None,
            source=f"{table.path.name}:{int(table.locations[position])}",
        )
        kept[item.id] = (position, item)
    items = [item for _, item in sorted(kept.values(), key=lambda pair: pair[0])]
    return TicketLoad(items=items, rows=table.n_rows, replaced=table.n_rows - len(items))


def _check_optional_columns(table: RawTable, named: list[str]) -> None:
    found = list(table.frame.columns)
    missing = [c for c in named if c not in found]
    if missing:
        raise MissingColumnError(
            f"{table.path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
            f"the file has {', '.join(map(repr, found)) or 'no columns'}",
            details={"file": str(table.path), "missing": missing, "found": found},
        )


def _refusal(
    table: RawTable, problems: list[Violation], count: int, report: ValidationReport
) -> ContractViolationError:
    problems = sorted(problems, key=lambda v: v.location or 0)
    shown = "; ".join(_describe(table, v) for v in problems[:_SHOWN_PROBLEMS])
    more = f" (and {count - _SHOWN_PROBLEMS} more)" if count > _SHOWN_PROBLEMS else ""
    first = problems[0]
    return ContractViolationError(
        f"{table.path}: {count} problem{'s' if count != 1 else ''} in the tickets: {shown}{more}; "
        "fix or remove those rows (`deskpilot validate` lists them all)",
        details={
            "file": str(table.path),
            table.location_kind: first.location,
            "column": first.column,
            "reason": first.message,
        },
        report=report,
    )


def _describe(table: RawTable, violation: Violation) -> str:
    where = f"{table.location_kind} {violation.location}" if violation.location is not None else "the file"
    column = f", column {violation.column!r}" if violation.column else ""
    return f"{where}{column}: {violation.message}"


def _optional_strings(table: RawTable, column: str, *, required: bool) -> list[str | None]:
    """A reply or id column as trimmed strings; ``None`` for a missing or blank reply. A blank id, or a cell
    of another type, refuses the file naming the row (integers are fine as ids)."""
    values: pd.Series = table.frame[column]
    kinds = classify(values)
    out: list[str | None] = []
    for position, value in enumerate(values.tolist()):
        usable = kinds.is_str[position] or kinds.is_int[position] or kinds.missing[position]
        if isinstance(value, bool) or not usable:
            reason = f"a {type(value).__name__}, expected a string"
        elif kinds.missing[position] or not str(value).strip():
            if not required:
                out.append(None)
                continue
            reason = "no value" if kinds.missing[position] else "empty after trimming"
        else:
            out.append(str(value).strip())
            continue
        location = int(table.locations[position])
        violation = Violation(location, column, reason)
        raise ContractViolationError(
            f"{table.path}: {_describe(table, violation)}",
            details={
                "file": str(table.path),
                table.location_kind: location,
                "column": column,
                "reason": reason,
            },
        )
    return out
