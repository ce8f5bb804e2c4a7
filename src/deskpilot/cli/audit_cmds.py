"""``deskpilot audit verify|log|rotate-key``: check and read the hash-chained audit log, and rotate its key.

Entries are written by the use cases themselves (:mod:`deskpilot.workflows.audit`), never by a command.
``verify`` checks the hashes, every entry's MAC against this home's audit keys, and every head recorded in
this home's ledger (plus ``--anchor``); entries written before audit keys existed are reported as unkeyed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, say_audited, state
from deskpilot.errors import UsageError
from deskpilot.store.audit import AuditAnchor, VerifyResult
from deskpilot.workflows.audit import ChainCheck, queued_entries, read_entries, rotate_key, verify_chain

app = typer.Typer(
    help="The tamper-evident audit log of promotions, rollbacks, gates and key changes.", no_args_is_help=True
)


@app.command("verify")
def verify(
    ctx: typer.Context,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            help="SEQ:HASH printed by an earlier verify and kept elsewhere; also detects deleted last "
            "entries and a rewritten chain.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Recompute the hash chain, check every MAC and every recorded head; exit 0 when intact, 1 naming the
    first broken entry."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        check = verify_chain(settings, _parse_anchor(anchor))
    result = check.result
    if json_output:
        extra = {"ledger": str(check.ledger), "keys": check.keys, "queued": check.queued}
        emit_json({"database": check.database, **result.to_dict(), **extra})
    else:
        typer.echo(_describe(result))
        for warning in _warnings(check):
            typer.echo(f"warning: {warning}", err=True)
        _say_queued(check.queued)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("rotate-key")
def rotate_key_command(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "scheduled rotation",
) -> None:
    """Add a new audit key to the key file: it signs from now on, the old ones still verify old entries."""
    settings = state(ctx).settings
    with reported_errors():
        rotated = rotate_key(settings, reason=reason)
    previous = rotated.previous_key_id or "none"
    typer.echo(f"audit key {rotated.key_id} signs from now on (previous: {previous})")
    if rotated.audit is not None:
        say_audited([rotated.audit])
    if rotated.audit_error is not None:
        typer.echo(f"error: {rotated.audit_error.message}", err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command("log")
def log_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N entries.")] = 50,
    since: Annotated[
        int | None,
        typer.Option("--since", min=0, help="Entries after this seq, oldest first [default: the newest N]."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List audit entries, oldest first; with --json, their payloads and hashes too."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        entries = read_entries(settings, limit=limit, since=since)
        queued = queued_entries(settings)
    if not json_output:
        _say_queued(queued)
    if json_output:
        emit_json([entry.to_dict() for entry in entries])
        return
    if not entries:
        typer.echo("no audit entries")
        return
    typer.echo(f"{'SEQ':>5}  {'TIME (UTC)':<19}  {'ACTOR':<12} {'ACTION':<13} {'TARGET':<28} REASON")
    for e in entries:
        when = f"{e.at:%Y-%m-%d %H:%M:%S}"
        typer.echo(f"{e.seq:>5}  {when}  {e.actor:<12} {e.action:<13} {e.target:<28} {e.reason}".rstrip())


def _say_queued(queued: int) -> None:
    if queued:
        typer.echo(
            f"warning: {queued} entr{'y' if queued == 1 else 'ies'} of key changes or automatic rollbacks "
            "wait in this home's queue for the store; the next audited action writes them",
            err=True,
        )


def _parse_anchor(text: str | None) -> AuditAnchor | None:
    if text is None:
        return None
    try:
        return AuditAnchor.parse(text)
    except ValueError as error:
        raise UsageError(f"--anchor: {error}") from None


def _describe(result: VerifyResult) -> str:
    if result.ok:
        if result.head is None:
            return "chain intact: 0 entries (the log is empty)"
        return (
            f"chain intact: {result.checked} entries ({_keyed(result)}), head {result.head.hash[:12]}, "
            f"{result.anchors} recorded head{'s' * (result.anchors != 1)} matched\n"
            f"anchor for later checks (keep it outside the database): {result.head.seq}:{result.head.hash}"
        )
    return (
        f"chain broken at seq {result.first_broken_seq}: {result.problem}\n"
        f"  {result.detail} ({result.checked} entries intact before it)"
    )


def _keyed(result: VerifyResult) -> str:
    if not result.unkeyed:
        return "all keyed"
    span = "1" if result.unkeyed == 1 else f"1..{result.unkeyed}"
    return f"{result.keyed} keyed, {result.unkeyed} unkeyed: entries {span}, written before audit keys"


def _warnings(check: ChainCheck) -> list[str]:
    result, found = check.result, []
    if result.ok and result.head is not None and not result.anchors:
        found.append(
            f"no head of this store is recorded in {check.ledger}: deleted newest entries or a rewritten "
            "chain cannot be detected from this home; pass --anchor SEQ:HASH kept elsewhere"
        )
    if result.ok and result.unkeyed and result.unkeyed == result.checked:
        found.append("no entry is keyed: anyone who can write the table could have written them")
    return found
