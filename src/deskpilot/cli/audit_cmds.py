"""``deskpilot audit verify|log``: check and read the hash-chained audit log.

Entries are written by the use cases themselves (:mod:`deskpilot.workflows.audit`), never by a command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, state
from deskpilot.errors import UsageError
from deskpilot.store.audit import AuditAnchor, VerifyResult
from deskpilot.workflows.audit import queued_entries, read_entries, verify_chain

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
    """Recompute the hash chain; exit 0 when intact, 1 naming the first broken entry."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        check = verify_chain(settings, _parse_anchor(anchor))
    result = check.result
    if json_output:
        emit_json({"database": check.database, **result.to_dict(), "queued": check.queued})
    else:
        typer.echo(_describe(result))
        _say_queued(check.queued)
    if not result.ok:
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
            f"chain intact: {result.checked} entries, head {result.head.hash[:12]}\n"
            f"anchor for later checks (keep it outside the database): {result.head.seq}:{result.head.hash}"
        )
    return (
        f"chain broken at seq {result.first_broken_seq}: {result.problem}\n"
        f"  {result.detail} ({result.checked} entries intact before it)"
    )
