"""``deskpilot evaluate`` and ``deskpilot gate``: measure a registered version, decide whether it ships."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import (
    EXIT_FAILED,
    JsonOpt,
    LabelColumnOpt,
    PiiPatternOpt,
    SuiteOpt,
    TextColumnOpt,
    emit_json,
    reported_errors,
    say_audited,
    state,
)
from deskpilot.evaluation.evaluate import EvaluationOptions
from deskpilot.evaluation.gate import GateDecision
from deskpilot.workflows.evaluation import LabelledData, evaluate_model, gate_model

ReportOpt = Annotated[Path | None, typer.Option("--report", help="Write report.html and report.md here.")]
BootstrapOpt = Annotated[int | None, typer.Option("--bootstrap", min=100, help="Bootstrap resamples.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and generated perturbations.")]


def evaluate_command(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: .csv, .tsv, .jsonl or .parquet.")],
    report: ReportOpt = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    suite: SuiteOpt = None,
    compare: Annotated[
        bool, typer.Option("--compare/--no-compare", help="Evaluate the champion beside it in the report.")
    ] = True,
    bootstrap: BootstrapOpt = None,
    seed: SeedOpt = 0,
    cpu_hour_price: Annotated[
        float, typer.Option("--cpu-hour-price", min=0.0, help="Price of one CPU-hour, for cost per 1,000.")
    ] = EvaluationOptions.cpu_hour_price,
    pii_pattern: PiiPatternOpt = None,
) -> None:
    """Evaluate a registered model on labelled DATA; metrics JSON on stdout, optional HTML/Markdown report."""
    settings = state(ctx).settings
    with reported_errors(as_json=True):
        options = EvaluationOptions(
            n_boot=bootstrap or EvaluationOptions.n_boot, seed=seed, cpu_hour_price=cpu_hour_price
        )
        rows = LabelledData(data, text_column, label_column, pii_pattern, suite)
        outcome = evaluate_model(settings, model_uri, rows, options, report_dir=report, compare=compare)
    emit_json(outcome.to_dict())


def gate_command(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: .csv, .tsv, .jsonl or .parquet.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate policy (YAML) [default: the packaged policy].")
    ] = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    suite: SuiteOpt = None,
    report: ReportOpt = None,
    seed: SeedOpt = 0,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Store the decision with the version in the registry."),
    ] = True,
    pii_pattern: PiiPatternOpt = None,
    include_seen_rows: Annotated[
        bool,
        typer.Option(
            "--include-seen-rows",
            help="Compare on every row, even those a model trained on (the leakage is reported). By default "
            "rows either model trained or was tuned on are left out and counted.",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Apply the gate policy to a registered model on DATA against the champion, on the rows neither trained
    on; exit 0 pass, 1 fail."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        rows = LabelledData(data, text_column, label_column, pii_pattern, suite)
        outcome = gate_model(
            settings,
            model_uri,
            rows,
            policy_file=policy,
            seed=seed,
            record=record,
            report_dir=report,
            include_seen=include_seen_rows,
        )
    if outcome.audit is not None:
        say_audited([outcome.audit])
    decision = outcome.decision
    if json_output:
        emit_json(decision.to_dict())
    else:
        typer.echo(_render(decision, outcome.version.uri))
    if not decision.passed:
        raise typer.Exit(EXIT_FAILED)


def _render(decision: GateDecision, uri: str) -> str:
    against = (decision.champion or {}).get("uri") or "no champion"
    lines = [
        f"gate {decision.outcome.upper()}: {uri} vs {against} "
        f"(policy {decision.policy}; {decision.compared_rows:,} paired rows)",
    ]
    if decision.rows is not None:
        lines.append(f"rows: {decision.rows.describe()}")
    lines += [
        "",
        decision.table(),
        "",
        f"reason: {decision.reason()}",
    ]
    return "\n".join(lines)
