"""``deskpilot data audit-labels``: likely mislabelled rows and conflicting near-duplicates in a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import (
    DataArg,
    JsonOpt,
    LabelColumnOpt,
    PiiPatternOpt,
    TextColumnOpt,
    emit_json,
    parse_params,
    reported_errors,
    state,
)
from deskpilot.evaluation.label_audit import DEFAULT_DUPLICATE_THRESHOLD
from deskpilot.models.families import FAMILIES
from deskpilot.workflows.label_audit import LabelAuditRequest, run_label_audit

app = typer.Typer(help="Dataset checks that need a model: the label audit.", no_args_is_help=True)

#: Flagged rows the terminal summary lists; the report and --json carry all of them.
LISTED = 10


@app.command("audit-labels")
def audit_labels_command(
    ctx: typer.Context,
    data: DataArg,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    model: Annotated[
        str, typer.Option("--model", help=f"Family scoring the rows out of fold: {', '.join(FAMILIES)}.")
    ] = "tfidf",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Hyperparameter KEY=VALUE; repeatable.")
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Stratified folds.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and of the model.")] = 0,
    duplicate_threshold: Annotated[
        float,
        typer.Option(
            "--duplicate-threshold", min=0.5, max=1.0, help="Cosine from which two texts are near-duplicates."
        ),
    ] = DEFAULT_DUPLICATE_THRESHOLD,
    report: Annotated[
        Path | None, typer.Option("--report", help="Folder for label_audit.{json,html,md}.")
    ] = None,
    pii_pattern: PiiPatternOpt = None,
    drop_invalid: Annotated[bool, typer.Option("--drop-invalid", help="Audit the valid rows only.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Flag rows whose label is likely wrong (confident learning on out-of-fold probabilities) and
    near-identical texts with different labels. Exit 0; the findings are data, not a failure."""
    settings = state(ctx).settings

    def say(message: str) -> None:
        if not json_output:
            typer.echo(f"· {message}", err=True)

    with reported_errors(as_json=json_output):
        request = LabelAuditRequest(
            data=data,
            text_column=text_column,
            label_column=label_column,
            family=model,
            params=parse_params(param),
            folds=folds,
            seed=seed,
            duplicate_threshold=duplicate_threshold,
            pii_patterns=pii_pattern,
            drop_invalid=drop_invalid,
            report_dir=report,
        )
        outcome = run_label_audit(settings, request, progress=say)
    audit = outcome.audit
    if json_output:
        emit_json(audit.to_dict())
        return
    typer.echo(
        f"{audit.rows:,} rows, {audit.labels} labels; out-of-fold accuracy {audit.out_of_fold_accuracy:.1%} "
        f"({audit.family}, {audit.folds} folds)"
    )
    typer.echo(f"likely mislabelled: {len(audit.flagged):,} rows ({audit.flagged_share:.1%})")
    for row in audit.flagged[:LISTED]:
        typer.echo(
            f"  line {row.location}: {row.given_label} -> {row.suggested_label} "
            f"(self-confidence {row.self_confidence:.3f}): {row.text[:80]}"
        )
    typer.echo(
        f"near-duplicates with different labels: {len(audit.conflicts):,} pairs "
        f"(cosine >= {audit.duplicate_threshold})"
    )
    for kind, path in outcome.report_files.items():
        typer.echo(f"{kind} report: {path}")
