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
    emit_json,
    render_report,
    reported_errors,
    state,
)
from deskpilot.workflows.build import build_redactor
from deskpilot.workflows.datasets import load_and_validate


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
        report = load_and_validate(
            settings,
            data,
            text_column=text_column,
            label_column=label_column,
            max_text_length=max_text_length,
            min_per_class=min_per_class,
            labels_file=labels,
            max_examples=max_examples,
        ).report
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
