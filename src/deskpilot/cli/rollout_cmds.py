"""``deskpilot promote``, ``deskpilot rollback`` and ``deskpilot rollout status``: safe rollout by hand.

Every change goes through :mod:`deskpilot.rollout.actions`, so it is checked (gate passed, or forced with a
reason), written once to the registry for every replica, and appended to the audit chain.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from deskpilot.cli.audit_cmds import open_for_append, open_for_reading
from deskpilot.cli.common import JsonOpt, build_registry, emit_json, parse_model_uri, reported_errors, state
from deskpilot.domain import ModelRef
from deskpilot.errors import StoreError
from deskpilot.rollout.actions import promote as promote_version
from deskpilot.rollout.actions import read_state
from deskpilot.rollout.actions import rollback as roll_back
from deskpilot.rollout.state import RolloutState
from deskpilot.store.audit import default_actor

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
    if to not in {"shadow", "canary", "champion"}:
        raise typer.BadParameter("--to must be shadow, canary or champion")
    with reported_errors(as_json=json_output):
        ref = parse_model_uri(model_uri)
        registry = build_registry(settings)
        audit = open_for_append(settings)
        new = promote_version(
            registry,
            audit,
            ref,
            to=to,
            percent=percent,
            actor=default_actor(),
            reason=reason or f"promoted to {to} from the CLI",
            force=force,
        )
    _report(new, ModelRef.parse(model_uri).name, json_output)


def rollback(
    ctx: typer.Context,
    name: NameOpt = None,
    reason: ReasonOpt = "rolled back from the CLI",
    json_output: JsonOpt = False,
) -> None:
    """One step back: stop the challenger, or (with none) return to the previous champion."""
    settings = state(ctx).settings
    model = name or settings.model_name
    with reported_errors(as_json=json_output):
        new = roll_back(
            build_registry(settings), open_for_append(settings), model, actor=default_actor(), reason=reason
        )
    _report(new, model, json_output)


@app.command("status")
def status(ctx: typer.Context, name: NameOpt = None, json_output: JsonOpt = False) -> None:
    """The champion, the challenger and its stage, earlier champions, and the last rollout events."""
    settings = state(ctx).settings
    model = name or settings.model_name
    with reported_errors(as_json=json_output):
        current = read_state(build_registry(settings), model)
        events = _recent_events(settings, model)
    if json_output:
        emit_json({**_as_dict(current, model), "events": events})
        return
    typer.echo(_render(current, model))
    for event in events:
        who = f"{event['actor']:<18} {event['action']:<14}"
        typer.echo(f"  {event['at']}  {who} {event['target']}  {event['reason']}")


def _recent_events(settings: Any, model: str, limit: int = 10) -> list[dict[str, Any]]:
    try:
        entries = open_for_reading(settings).entries()
    except StoreError:
        return []  # no store yet: nothing was promoted through rollout
    prefix = f"models:/{model}/"
    mine = [e for e in entries if e.target.startswith(prefix)]
    return [
        {
            "seq": e.seq,
            "at": e.at.isoformat(timespec="seconds"),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "reason": e.reason,
        }
        for e in mine[-limit:]
    ]


def _as_dict(current: RolloutState, model: str) -> dict[str, Any]:
    def uri(version: str | None) -> str | None:
        return None if version is None else ModelRef(model, version=version).uri

    return {
        "champion": uri(current.champion),
        "challenger": uri(current.challenger),
        "stage": str(current.stage),
        "percent": current.percent,
        "previous_champions": [uri(v) for v in current.history],
        "revision": current.revision,
        "updated_at": current.updated_at,
        "updated_by": current.updated_by,
        "reason": current.reason,
    }


def _render(current: RolloutState, model: str) -> str:
    info = _as_dict(current, model)
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


def _report(new: RolloutState, model: str, json_output: bool) -> None:
    if json_output:
        emit_json({"ok": True, **_as_dict(new, model)})
    else:
        typer.echo(_render(new, model))
