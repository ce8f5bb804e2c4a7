"""``deskpilot validate`` and ``deskpilot redact``: check a dataset against the contract, scrub PII."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from deskpilot.cli.common import (
    EXIT_FAILED,
    DataArg,
    JsonOpt,
    LabelColumnOpt,
    LabelsFileOpt,
    MaxLengthOpt,
    MinPerClassOpt,
    PiiPatternOpt,
    TextColumnOpt,
    build_contract,
    build_redactor,
    emit_json,
    reported_errors,
    state,
)
from deskpilot.data.contracts import ValidationReport, validate_table
from deskpilot.data.io import read_table


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


def validate(
    ctx: typer.Context,
    data: DataArg,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    max_text_length: MaxLengthOpt = None,
    min_per_class: MinPerClassOpt = None,
    labels: LabelsFileOpt = None,
    max_examples: Annotated[int, typer.Option("--max-examples", min=1, help="Examples shown per rule.")] = 20,
    json_output: JsonOpt = False,
) -> None:
    """Check DATA against the data contract: exit 0 if it meets it, 1 if not, 2 on a usage error."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        contract = build_contract(
            settings,
            text_column=text_column,
            label_column=label_column,
            max_text_length=max_text_length,
            min_per_class=min_per_class,
            labels_file=labels,
        )
        report = validate_table(read_table(data), contract, max_examples=max_examples)
    if json_output:
        emit_json(report.to_dict())
    else:
        typer.echo(render_report(report))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def redact(
    text: Annotated[
        str | None, typer.Argument(help="Text to redact; reads lines from stdin when omitted.")
    ] = None,
    pii_pattern: PiiPatternOpt = None,
) -> None:
    """Print TEXT (or each stdin line) with PII replaced by typed placeholders such as <EMAIL>."""
    with reported_errors():
        redactor = build_redactor(pii_pattern)
    if text is not None:
        typer.echo(redactor.redact(text))
        return
    for line in sys.stdin:
        typer.echo(redactor.redact(line.rstrip("\n")))
