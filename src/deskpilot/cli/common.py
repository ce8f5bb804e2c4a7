"""What every CLI command shares: the app state, dataset options, error reporting and JSON output.

Commands are thin adapters: parse options, call one use case in :mod:`deskpilot.workflows`, render its
result. No command module imports another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from deskpilot.config import Settings
from deskpilot.errors import ContractViolationError, DeskPilotError, UsageError

if TYPE_CHECKING:
    from deskpilot.data.contracts import ValidationReport
    from deskpilot.workflows.audit import AuditReceipt

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


@dataclass(frozen=True)
class AppState:
    """Built once by the CLI callback; commands read settings from here, never from the environment."""

    settings: Settings


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        raise RuntimeError("the CLI callback did not run")
    return obj


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` overrides; values are read as JSON when they parse (numbers, lists), else as text."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


DataArg = Annotated[Path, typer.Argument(help="Dataset file: .csv, .tsv, .jsonl/.ndjson or .parquet.")]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="Column holding the message text.")]
LabelColumnOpt = Annotated[str, typer.Option("--label-column", help="Column holding the intent label.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
MaxLengthOpt = Annotated[
    int | None,
    typer.Option("--max-text-length", min=1, help="Longest text allowed [default: from settings]."),
]
MinPerClassOpt = Annotated[
    int | None,
    typer.Option("--min-per-class", min=1, help="Fewest examples per label [default: from settings]."),
]
LabelsFileOpt = Annotated[
    Path | None, typer.Option("--labels", help="File listing the allowed labels, one per line.")
]
SuiteOpt = Annotated[
    Path | None,
    typer.Option(
        "--suite",
        help="Behavioral suite (YAML) [default: behavioral.yaml beside the data, else generated cases].",
    ),
]
PiiPatternOpt = Annotated[
    list[str] | None,
    typer.Option("--pii-pattern", help="Extra PII pattern NAME=REGEX, redacted as <NAME>; repeatable."),
]


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO-8601 option value as an aware time (UTC when it names no zone), or a usage error naming it."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not an ISO-8601 date or time (e.g. 2026-03-01 or 2026-03-01T12:00Z)",
            details={"option": option, "value": text},
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def exit_code_for(error: DeskPilotError) -> int:
    return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED


def fail(error: DeskPilotError, *, as_json: bool) -> NoReturn:
    if isinstance(error, ContractViolationError) and error.report is not None:
        typer.echo(render_report(error.report), err=True)  # every located problem, not only the count
    if as_json:
        emit_json({"ok": False, "error": error.to_dict()})
    else:
        typer.echo(f"error: {error.message}", err=True)
    raise typer.Exit(exit_code_for(error))


def say_audited(receipts: Iterable[AuditReceipt]) -> None:
    """What became of each audit entry, on stderr (a queued one is a warning)."""
    for receipt in receipts:
        if receipt.queued:
            typer.echo(
                "warning: the audit entry could not be written (store unavailable); "
                f"queued, it is appended when the store is reachable ({receipt.action} {receipt.target})",
                err=True,
            )
        else:
            typer.echo(receipt.describe(), err=True)


def render_report(report: ValidationReport) -> str:
    """A compiler-style report: one header line, then each rule with its count and located examples."""
    contract = report.contract
    columns = f"text column {contract.text_column!r}"
    if contract.label_column is not None:
        columns += f", label column {contract.label_column!r}"
    verdict = "meets the contract" if report.ok else "does NOT meet the contract"
    lines = [
        f"{report.file}: {verdict} (contract v{contract.version}; {columns})",
        f"  {report.n_rows:,} rows, {len(report.label_counts)} labels, "
        f"{report.n_invalid_rows:,} invalid rows",
    ]
    for rule in report.rules:
        unit = "row" if rule.examples and rule.examples[0].location is not None else "item"
        plural = "" if rule.count == 1 else "s"
        lines.append(
            f"{rule.severity.value}: {rule.rule} — {rule.description} ({rule.count:,} {unit}{plural})"
        )
        for example in rule.examples:
            where = report.file if example.location is None else f"{report.file}:{example.location}"
            column = f" [{example.column}]" if example.column else ""
            lines.append(f"  {where}{column}: {example.message}")
        if rule.count > len(rule.examples):
            lines.append(f"  … and {rule.count - len(rule.examples):,} more")
    return "\n".join(lines)


@contextmanager
def reported_errors(*, as_json: bool = False) -> Iterator[None]:
    """Turn DeskPilot's errors into a one-line message (or JSON) and the documented exit code."""
    try:
        yield
    except DeskPilotError as error:
        fail(error, as_json=as_json)
