"""``deskpilot promote``, ``rollback``, ``rollout status`` and ``rollout report``: safe rollout by hand, and
the shadow agreement report.

Every change goes through :mod:`deskpilot.rollout.actions`, so it is checked (gate passed, or forced with a
reason), written once to the registry for every replica, and appended to the audit chain. The report reads
the shadow log from the store, so it works from any machine that reaches the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from deskpilot.cli.audit_cmds import existing_store_url, open_for_append, open_for_reading
from deskpilot.cli.common import JsonOpt, build_registry, emit_json, parse_model_uri, reported_errors, state
from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import DeskPilotError, NoShadowDataError, StoreError, UsageError
from deskpilot.rollout.actions import promote as promote_version
from deskpilot.rollout.actions import read_state
from deskpilot.rollout.actions import rollback as roll_back
from deskpilot.rollout.render import headline_lines, write_report
from deskpilot.rollout.report import MIN_COUNT, build_report
from deskpilot.rollout.state import RolloutState
from deskpilot.store.audit import PROMOTE, default_actor
from deskpilot.store.sql import SqlStore

app = typer.Typer(help="Inspect the rollout of the champion and its challenger.", no_args_is_help=True)
NameOpt = Annotated[str | None, typer.Option("--name", help="Registered model [default: from settings].")]
PROMOTIONS = (PROMOTE, "force_promote")  # the audit actions of deskpilot.rollout.actions.promote
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
    model = name or settings.model_name
    with reported_errors(as_json=json_output):
        cutoff = _parse_since(since)
        challenger = version or _last_challenger(settings, model)
        store = SqlStore(existing_store_url(settings, "nothing was served here yet"))
        try:
            pairs = store.shadow_comparison(model, challenger, cutoff)
        finally:
            store.close()
        target = ModelRef(model, version=challenger).uri
        if not pairs:
            when = f" since {cutoff.isoformat()}" if cutoff is not None else ""
            raise NoShadowDataError(
                f"nothing to report: no shadow answers of {target}{when} next to a logged champion decision; "
                f"put it in shadow (`deskpilot promote {target} --to shadow`) and serve traffic",
                details={"model": target, "since": None if cutoff is None else cutoff.isoformat()},
            )
        shadow = build_report(
            pairs, model_name=model, challenger_version=challenger, since=cutoff, min_count=min_count
        )
        files = write_report(out, shadow) if out is not None else None
    if json_output:
        written = None if files is None else {"html": str(files[0]), "markdown": str(files[1])}
        emit_json({"ok": True, **shadow.to_dict(), "files": written})
        return
    for line in headline_lines(shadow):
        typer.echo(line)
    if files is not None:
        typer.echo(f"report        {files[0]}, {files[1]}")


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: not an ISO-8601 date or time (e.g. 2026-03-01T12:00)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _last_challenger(settings: Settings, model: str) -> str:
    """The current challenger; else the version last promoted to shadow or canary, from the audit log."""
    try:
        current = read_state(build_registry(settings), model).challenger
    except DeskPilotError:
        current = None  # no registry here: the audit log (in the store) may still know
    if current is not None:
        return current
    prefix = f"models:/{model}/"
    try:
        log = open_for_reading(settings)
        try:
            entries = log.entries()
        finally:
            log.close()
    except StoreError:
        entries = []
    for entry in reversed(entries):
        staged = entry.payload.get("to") in ("shadow", "canary")
        if entry.action in PROMOTIONS and staged and entry.target.startswith(prefix):
            return entry.target.removeprefix(prefix)
    raise NoShadowDataError(
        f"nothing to report: {model} has no challenger and the audit log records none; pass --version",
        details={"model": model},
    )


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
