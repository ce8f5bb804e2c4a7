"""``deskpilot feedback export`` and ``deskpilot retrain --from-feedback``: the closed loop, from the agents'
verdicts in the store to a gated challenger in shadow (ADR 0014)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import JsonOpt, emit_json, fail, parse_time, reported_errors, say_audited, state
from deskpilot.errors import UsageError

app = typer.Typer(
    help="Agents' feedback on decisions: export it as a labelled dataset.", no_args_is_help=True
)

SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="ISO", help="Verdicts given at or after this date or time (UTC by default)."
    ),
]


@app.command("export")
def export_command(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write: .csv, .tsv, .jsonl or .parquet.")
    ],
    since: SinceOpt = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="ISO", help="Verdicts given before this [default: now].")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="One tenant's verdicts only.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Write the verdicts given in a range as a dataset (text, label, provenance) that meets the contract."""
    from deskpilot.workflows.feedback.export import ExportRequest, export_feedback

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        request = ExportRequest(output, parse_time(since, "--since"), parse_time(until, "--until"), tenant)
        outcome = export_feedback(settings, request)
    summary = outcome.summary
    if json_output:
        emit_json({"ok": True, **summary, "summary_file": str(outcome.summary_file)})
        return
    left = summary["texts_left_out"]
    contract = summary["contract"]
    verdict = "met" if contract["ok"] else f"NOT met ({', '.join(contract['failed_rules'])})"
    since_text = summary["since"] or "from the start"
    lines = [
        f"wrote {summary['rows']:,} rows to {outcome.output} from {summary['verdicts']:,} verdicts of "
        f"{len(summary['by_tenant'])} tenant(s), given {since_text} … {summary['until']}",
        f"  {summary['corrections']:,} corrections; {summary['duplicates_merged']:,} duplicate verdicts "
        f"counted once; {summary['conflicts']:,} texts with conflicting verdicts "
        f"({left.get('unresolved_conflict', 0)} ties left out)",
        f"  'no intent fits': {summary['other_intent']:,} verdicts, "
        f"{left.get('other_intent', 0)} texts left out",
        "  by reviewer: " + ", ".join(f"{k} {v}" for k, v in summary["by_reviewer"].items()),
        f"  data contract: {verdict}",
        f"summary: {outcome.summary_file}",
    ]
    typer.echo("\n".join(lines))


def retrain(
    ctx: typer.Context,
    from_feedback: Annotated[
        bool,
        typer.Option("--from-feedback", help="Add the feedback the guard accepts to the champion's data."),
    ] = False,
    since: SinceOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model family [default: the champion's family].")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate and rollout policy (YAML) [default: packaged].")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the new rows' split and of training [default: champion's]."),
    ] = None,
    max_tenant_share: Annotated[
        float,
        typer.Option("--max-tenant-share", help="Most of the accepted rows one tenant may give, in (0, 1]."),
    ] = 0.5,
    min_agreement: Annotated[
        int,
        typer.Option(
            "--min-agreement", help="Tenants that must agree to overturn a label or settle a conflict."
        ),
    ] = 2,
    max_per_intent: Annotated[
        int | None,
        typer.Option("--max-per-intent", help="Most accepted changes per intent [default: no cap]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what the feedback would change; write nothing.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Registered model name.")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write feedback_report.json and .md here.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Retrain the champion on its data plus accepted feedback, gate it, put it in shadow if it passes.

    Exit 0: passed, or nothing to do; 1: the gate failed; 2: a usage error."""
    from deskpilot.workflows.feedback.guard import GuardOptions
    from deskpilot.workflows.feedback.retrain import RetrainRequest, Status, retrain_from_feedback

    settings = state(ctx).settings
    if not from_feedback:
        fail(UsageError("retrain needs a source of new labels: pass --from-feedback"), as_json=json_output)

    def say(message: str) -> None:
        if not json_output:
            typer.echo(f"· {message}", err=True)

    with reported_errors(as_json=json_output):
        request = RetrainRequest(
            since=parse_time(since, "--since"),
            family=model,
            policy_file=policy,
            seed=seed,
            guard=GuardOptions(max_tenant_share, min_agreement, max_per_intent),
            dry_run=dry_run,
            name=name,
            report_dir=report,
        )
        outcome = retrain_from_feedback(settings, request, progress=say)
    say_audited(outcome.audit)
    if json_output:
        uri = outcome.run.version.uri if outcome.run is not None else None
        emit_json(
            {
                "ok": outcome.status is not Status.FAILED,
                "status": str(outcome.status),
                "message": outcome.message,
                "uri": uri,
                "report": outcome.report,
            }
        )
    else:
        if outcome.status is not Status.NOTHING_TO_DO:
            from deskpilot.workflows.feedback.report import render_markdown

            typer.echo(render_markdown(outcome.report))
        typer.echo(outcome.message)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
