"""``deskpilot promote``, ``rollback``, ``rollout status`` and ``rollout report``: safe rollout by hand, and
the shadow agreement report.

Every change goes through :mod:`deskpilot.workflows.rollout`, so it is checked (gate passed, or forced with a
reason), written once to the registry for every replica, and appended to the audit chain. The report reads
the shadow log from the store, so it works from any machine that reaches the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import JsonOpt, emit_json, parse_time, reported_errors, say_audited, state
from deskpilot.rollout.actions import PROMOTION_TARGETS
from deskpilot.rollout.render import headline_lines
from deskpilot.rollout.report import MIN_COUNT
from deskpilot.workflows import rollout
from deskpilot.workflows.audit import open_audit
from deskpilot.workflows.rollout import RolloutView

app = typer.Typer(help="Inspect the rollout of the champion and its challenger.", no_args_is_help=True)
NameOpt = Annotated[str | None, typer.Option("--name", help="Registered model [default: from settings].")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, for the audit log.")]


def promote(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    to: Annotated[str, typer.Option("--to", help="shadow, canary or champion.")],
    percent: Annotated[
        float | None, typer.Option("--percent", min=0.0, max=100.0, help="Canary share [default: 10].")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote a version that did not pass its gate (needs --reason).")
    ] = False,
    reason: ReasonOpt = "",
    json_output: JsonOpt = False,
) -> None:
    """Put a gated version in shadow, in canary at --percent, or make it the champion."""
    settings = state(ctx).settings
    if to not in PROMOTION_TARGETS:
        raise typer.BadParameter("--to must be shadow, canary or champion")
    audit = open_audit(settings)
    with reported_errors(as_json=json_output):
        view = rollout.promote(
            settings,
            model_uri,
            to=to,
            percent=percent,
            force=force,
            reason=reason or f"promoted to {to} from the CLI",
            audit=audit,
        )
    say_audited(audit.receipts)
    _report(view, json_output)


def rollback(
    ctx: typer.Context,
    name: NameOpt = None,
    reason: ReasonOpt = "rolled back from the CLI",
    json_output: JsonOpt = False,
) -> None:
    """One step back: stop the challenger, or (with none) return to the previous champion."""
    settings = state(ctx).settings
    audit = open_audit(settings)
    with reported_errors(as_json=json_output):
        view = rollout.rollback(settings, model=name, reason=reason, audit=audit)
    say_audited(audit.receipts)
    _report(view, json_output)


@app.command("status")
def status(ctx: typer.Context, name: NameOpt = None, json_output: JsonOpt = False) -> None:
    """The champion, the challenger and its stage, earlier champions, and the last rollout events."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        current = rollout.status(settings, model=name)
    if json_output:
        emit_json({**current.view.to_dict(), "events": current.events})
        return
    typer.echo(_render(current.view))
    for event in current.events:
        who = f"{event['actor']:<18} {event['action']:<14}"
        typer.echo(f"  {event['at']}  {who} {event['target']}  {event['reason']}")


@app.command("report")
def report(
    ctx: typer.Context,
    name: NameOpt = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Challenger version (default: the current challenger, else the last one promoted to "
            "shadow or canary).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only requests at or after this ISO-8601 time (UTC unless it says)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write report.html and report.md into this folder.")
    ] = None,
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="Fewest requests for an intent to be ranked.")
    ] = MIN_COUNT,
    json_output: JsonOpt = False,
) -> None:
    """Shadow agreement of a challenger with the champion on the same requests, from the shadow log."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        outcome = rollout.shadow_report(
            settings,
            model=name,
            version=version,
            since=parse_time(since, "--since"),
            out=out,
            min_count=min_count,
        )
    shadow, files = outcome.report, outcome.files
    if json_output:
        written = None if files is None else {"html": str(files[0]), "markdown": str(files[1])}
        emit_json({"ok": True, **shadow.to_dict(), "files": written})
        return
    for line in headline_lines(shadow):
        typer.echo(line)
    if files is not None:
        typer.echo(f"report        {files[0]}, {files[1]}")


def _render(view: RolloutView) -> str:
    current, info = view.state, view.to_dict()
    challenger = "none"
    if info["challenger"]:
        share = f" at {current.percent:g}%" if current.stage.value == "canary" else ""
        challenger = f"{info['challenger']} in {current.stage}{share}"
    lines = [
        f"champion    {info['champion'] or 'none'}",
        f"challenger  {challenger}",
        f"previous    {', '.join(info['previous_champions']) or '-'}",
        f"revision    {current.revision} ({current.updated_at} by {current.updated_by or '-'}: "
        f"{current.reason or '-'})",
    ]
    return "\n".join(lines)


def _report(view: RolloutView, json_output: bool) -> None:
    if json_output:
        emit_json({"ok": True, **view.to_dict()})
    else:
        typer.echo(_render(view))
