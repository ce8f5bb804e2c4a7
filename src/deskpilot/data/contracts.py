"""The data contract: what a labelled dataset must satisfy before DeskPilot trains or evaluates on it.

Checks are vectorized over whole columns so that a million rows validate in seconds. Every violation names
the file, the 1-based line (or Parquet row), the column and the reason; violations are grouped by rule with
exact counts and a capped list of examples, so a huge broken file still gives a readable report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.data.columns import as_strings, classify, trimmed_labels
from deskpilot.data.io import RawTable, has_bad_bytes
from deskpilot.errors import ContractViolationError, EmptyDatasetError, MissingColumnError

CONTRACT_VERSION = "1"
_DELIMITER_HINTS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class DataContract:
    """What the data must look like. ``label_column=None`` checks unlabelled data (texts to score)."""

    text_column: str = "text"
    label_column: str | None = "label"
    max_text_length: int = 2000
    min_examples_per_class: int = 5
    min_classes: int = 2
    allowed_labels: frozenset[str] | None = None
    version: str = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "max_text_length": self.max_text_length,
            "min_examples_per_class": self.min_examples_per_class,
            "min_classes": self.min_classes,
            "allowed_labels": sorted(self.allowed_labels) if self.allowed_labels is not None else None,
        }


@dataclass(frozen=True)
class Violation:
    """One problem: ``location`` is the 1-based line/row, or ``None`` for a dataset-level rule."""

    location: int | None
    column: str | None
    message: str


@dataclass(frozen=True)
class RuleResult:
    rule: str
    severity: Severity
    description: str
    count: int
    examples: tuple[Violation, ...]


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of checking one file against a contract."""

    file: str
    format: str
    location_kind: str
    n_rows: int
    columns: tuple[str, ...]
    contract: DataContract
    rules: tuple[RuleResult, ...]
    label_counts: dict[str, int]
    invalid_rows: np.ndarray = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.severity is Severity.WARNING)

    @property
    def n_invalid_rows(self) -> int:
        return int(self.invalid_rows.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "file": self.file,
            "format": self.format,
            "rows": self.n_rows,
            "invalid_rows": self.n_invalid_rows,
            "columns": list(self.columns),
            "contract": self.contract.to_dict(),
            "labels": len(self.label_counts),
            "label_counts": self.label_counts,
            "violations": [
                {
                    "rule": r.rule,
                    "severity": r.severity.value,
                    "description": r.description,
                    "count": r.count,
                    "examples": [
                        {
                            "file": self.file,
                            self.location_kind: v.location,
                            "column": v.column,
                            "reason": v.message,
                        }
                        for v in r.examples
                    ],
                }
                for r in self.rules
            ],
        }


class _Collector:
    """Accumulates rule results and the per-row invalid mask while the checks run."""

    def __init__(self, table: RawTable, max_examples: int) -> None:
        self._locations = table.locations
        self.location_kind = table.location_kind
        self._max_examples = max_examples
        self.invalid = np.zeros(table.n_rows, dtype=bool)
        self.rules: list[RuleResult] = []

    def location(self, position: int) -> int:
        return int(self._locations[position])

    def rows(
        self,
        rule: str,
        description: str,
        mask: np.ndarray,
        column: str | None,
        reasons: str | Callable[[int], str],
        severity: Severity = Severity.ERROR,
    ) -> None:
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return
        if severity is Severity.ERROR:
            self.invalid |= mask
        shown = positions[: self._max_examples]
        messages = [reasons if isinstance(reasons, str) else reasons(int(p)) for p in shown]
        examples = tuple(
            Violation(int(self._locations[p]), column, msg) for p, msg in zip(shown, messages, strict=True)
        )
        self.rules.append(RuleResult(rule, severity, description, int(positions.size), examples))

    def dataset(self, rule: str, description: str, messages: list[str], column: str | None) -> None:
        if messages:
            examples = tuple(Violation(None, column, m) for m in messages[: self._max_examples])
            self.rules.append(RuleResult(rule, Severity.ERROR, description, len(messages), examples))


def check_columns(table: RawTable, contract: DataContract) -> None:
    """Fail fast, with a hint, when the columns the contract names are not in the file."""
    required = [c for c in (contract.text_column, contract.label_column) if c is not None]
    missing = [c for c in required if c not in table.frame.columns]
    if not missing and table.n_rows == 0 and not table.row_problems:
        raise EmptyDatasetError(
            f"{table.path}: the file has a header but no data rows", details={"file": str(table.path)}
        )
    if not missing:
        return
    found = list(table.frame.columns)
    message = f"{table.path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
    message += f"; the file has {', '.join(map(repr, found)) or 'no columns'}"
    message += _column_hint(found)
    raise MissingColumnError(message, details={"file": str(table.path), "missing": missing, "found": found})


def _column_hint(found: list[str]) -> str:
    if len(found) == 1:
        for char, name in _DELIMITER_HINTS.items():
            if char in found[0]:
                return (
                    f" — the header looks {name}-separated; .csv files must use commas (or use .tsv for tabs)"
                )
    if any(len(name) > 40 or name.count(" ") >= 3 for name in found):
        return " — the first line looks like data, not a header: add a header line naming the columns"
    return " — pass --text-column/--label-column to name the right ones"


def validate_table(table: RawTable, contract: DataContract, *, max_examples: int = 20) -> ValidationReport:
    """Check every row and the dataset as a whole; raise only when the file cannot be checked at all."""
    check_columns(table, contract)
    out = _Collector(table, max_examples)
    _check_row_problems(table, out, max_examples)
    text = table.frame[contract.text_column]
    stripped_text, text_ok = _check_text(table, text, contract, out)
    label_counts: dict[str, int] = {}
    if contract.label_column is not None:
        labels = table.frame[contract.label_column]
        normalized, label_ok = _check_labels(table, labels, contract, out)
        usable = text_ok & label_ok
        _check_conflicts(stripped_text, normalized, usable, contract, out)
        counts = normalized[usable].value_counts()
        label_counts = {str(k): int(v) for k, v in counts.sort_index().items()}
        _check_classes(label_counts, contract, out)
    return ValidationReport(
        file=str(table.path),
        format=table.format,
        location_kind=table.location_kind,
        n_rows=table.n_rows,
        columns=tuple(table.frame.columns),
        contract=contract,
        rules=tuple(sorted(out.rules, key=lambda r: (r.severity is not Severity.ERROR, -r.count))),
        label_counts=label_counts,
        invalid_rows=out.invalid,
    )


def _check_row_problems(table: RawTable, out: _Collector, max_examples: int) -> None:
    by_rule: dict[str, list[Violation]] = {}
    for problem in table.row_problems:
        by_rule.setdefault(problem.rule, []).append(Violation(problem.location, None, problem.message))
    descriptions = {"invalid_json": "line is not a JSON object", "encoding_error": "bytes that are not UTF-8"}
    for rule, found in by_rule.items():
        out.rules.append(
            RuleResult(
                rule, Severity.ERROR, descriptions.get(rule, rule), len(found), tuple(found[:max_examples])
            )
        )


def _check_text(
    table: RawTable, text: pd.Series, contract: DataContract, out: _Collector
) -> tuple[pd.Series, np.ndarray]:
    column = contract.text_column
    kinds = classify(text)
    out.rows("text_missing", "text is missing (null)", kinds.missing, column, "no value")
    not_str = ~kinds.is_str & ~kinds.missing
    out.rows(
        "text_not_string",
        "text is not a string",
        not_str,
        column,
        lambda p: f"a {kinds.name_at(p)}, expected a string",
    )
    stripped = as_strings(text, kinds.is_str).str.strip()
    empty = kinds.is_str & (stripped == "").to_numpy(dtype=bool)
    out.rows("text_empty", "text is empty after trimming whitespace", empty, column, "empty after trimming")
    lengths = stripped.str.len().to_numpy(dtype=np.int64)
    too_long = lengths > contract.max_text_length
    out.rows(
        "text_too_long",
        f"text is longer than {contract.max_text_length:,} characters",
        too_long,
        column,
        lambda p: f"{lengths[p]:,} characters; the limit is {contract.max_text_length:,}",
    )
    ok = kinds.is_str & ~empty & ~too_long
    if table.may_have_bad_bytes:
        bad = has_bad_bytes(text).to_numpy()
        out.rows("encoding_error", "bytes that are not UTF-8", bad, column, "bytes that are not valid UTF-8")
        ok &= ~bad
    return stripped, ok


def _check_labels(
    table: RawTable, labels: pd.Series, contract: DataContract, out: _Collector
) -> tuple[pd.Series, np.ndarray]:
    column = contract.label_column
    kinds = classify(labels)
    out.rows("label_missing", "label is missing (null)", kinds.missing, column, "no value")
    out.rows(
        "label_not_string",
        "label is neither a string nor an integer",
        ~(kinds.is_str | kinds.is_int | kinds.missing),
        column,
        lambda p: f"a {kinds.name_at(p)}, expected a string or integer",
    )
    mixed = np.zeros(len(labels), dtype=bool)
    if kinds.is_str.any() and kinds.is_int.any():
        minority, majority = ("int", "str") if kinds.is_int.sum() <= kinds.is_str.sum() else ("str", "int")
        mixed = kinds.is_int if minority == "int" else kinds.is_str
        out.rows(
            "label_mixed_types",
            "the label column mixes strings and integers",
            mixed,
            column,
            f"a {minority} label in a column of mostly {majority} labels",
        )
    normalized = trimmed_labels(labels, kinds)
    empty = kinds.is_str & (normalized == "").to_numpy(dtype=bool)
    out.rows("label_empty", "label is empty after trimming whitespace", empty, column, "empty after trimming")
    ok = (kinds.is_str | kinds.is_int) & ~empty & ~mixed
    if table.may_have_bad_bytes:
        bad = has_bad_bytes(labels).to_numpy()
        out.rows("encoding_error", "bytes that are not UTF-8", bad, column, "bytes that are not valid UTF-8")
        ok &= ~bad
    if contract.allowed_labels is not None:
        unknown = ok & ~normalized.isin(contract.allowed_labels).to_numpy(dtype=bool)
        out.rows(
            "label_not_allowed",
            "label is not in the allowed label set",
            unknown,
            column,
            lambda p: f"{normalized.iloc[p]!r} is not an allowed label",
        )
        ok &= ~unknown
    return normalized, ok


def _check_conflicts(
    keys: pd.Series, labels: pd.Series, usable: np.ndarray, contract: DataContract, out: _Collector
) -> None:
    """Rows whose trimmed text repeats: an error when the labels differ, a warning when they agree."""
    candidates = np.flatnonzero(usable)
    usable_keys = keys.iloc[candidates]
    repeated_at = candidates[usable_keys.duplicated(keep=False).to_numpy(dtype=bool)]
    if repeated_at.size == 0:
        return
    group = pd.DataFrame(
        {
            "key": keys.iloc[repeated_at].to_numpy(dtype=object),
            "label": labels.iloc[repeated_at].to_numpy(dtype=object),
        },
        index=repeated_at,
    )
    n_labels = group.groupby("key")["label"].transform("nunique").to_numpy()
    conflicting = group[n_labels > 1]
    label_sets = {str(key): sorted(set(found)) for key, found in conflicting.groupby("key")["label"]}
    mask = np.zeros(len(keys), dtype=bool)
    mask[conflicting.index.to_numpy()] = True
    out.rows(
        "conflicting_duplicate",
        "identical texts carry different labels",
        mask,
        contract.label_column,
        lambda p: (
            "the same text has labels " + ", ".join(map(repr, label_sets[str(conflicting.at[p, "key"])]))
        ),
    )
    agreeing = group[n_labels == 1]
    first_seen = pd.Series(agreeing.index, index=agreeing.index).groupby(agreeing["key"]).transform("min")
    repeats = agreeing.index.to_numpy()[agreeing["key"].duplicated(keep="first").to_numpy()]
    duplicate = np.zeros(len(keys), dtype=bool)
    duplicate[repeats] = True
    out.rows(
        "duplicate_text",
        "identical text and label repeated (kept, but it inflates that class)",
        duplicate,
        contract.text_column,
        lambda p: f"same text and label as {out.location_kind} {out.location(int(first_seen[p]))}",
        severity=Severity.WARNING,
    )


def _check_classes(label_counts: dict[str, int], contract: DataContract, out: _Collector) -> None:
    small = [
        f"label {label!r} has {n} example{'s' if n != 1 else ''}; the contract needs at least "
        f"{contract.min_examples_per_class}"
        for label, n in sorted(label_counts.items(), key=lambda kv: kv[1])
        if n < contract.min_examples_per_class
    ]
    out.dataset(
        "class_too_small",
        "a label has too few examples to train and validate on",
        small,
        contract.label_column,
    )
    if len(label_counts) < contract.min_classes:
        found = ", ".join(map(repr, label_counts)) or "none"
        out.dataset(
            "too_few_classes",
            f"fewer than {contract.min_classes} distinct labels",
            [
                f"{len(label_counts)} distinct label(s) ({found}); "
                f"a classifier needs at least {contract.min_classes}"
            ],
            contract.label_column,
        )


def contract_violation(report: ValidationReport, *, hint: str = "") -> ContractViolationError:
    """The error for data that breaks the contract, carrying its report (every rule, located rows)."""
    rules = [r.rule for r in report.errors]
    message = (
        f"{report.file}: the data breaks the contract ({report.n_invalid_rows:,} invalid rows; "
        f"failed rules: {', '.join(rules)})"
    )
    return ContractViolationError(
        f"{message}; {hint}" if hint else message,
        details={"file": str(report.file), "rules": rules},
        report=report,
    )
