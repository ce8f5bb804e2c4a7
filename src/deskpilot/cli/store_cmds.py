"""``deskpilot store migrate|trace|purge|erase|backup|restore``: the decision store's schema, one id through
its decision log, deleting what it need not keep (retention) or must not keep (erasure), and backups."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, say_audited, state
from deskpilot.errors import UsageError

if TYPE_CHECKING:
    from deskpilot.store.base import DeletedRows
    from deskpilot.workflows.backup import Restored
    from deskpilot.workflows.decisions import DecisionTrace

app = typer.Typer(help="The prediction and feedback store.", no_args_is_help=True)


@app.command("migrate")
def migrate_store(ctx: typer.Context) -> None:
    """Create or upgrade the store's tables (DESKPILOT_DATABASE_URL, default SQLite under the home).

    With DESKPILOT_MIGRATION_DATABASE_URL (PostgreSQL), the tables are created by that owner role and the
    role of DESKPILOT_DATABASE_URL gets only what the service needs: INSERT and SELECT on the audit log."""
    from deskpilot.workflows.schema import migrate_store as migrate

    settings = state(ctx).settings
    with reported_errors():
        done = migrate(settings)
    typer.echo(f"store schema at revision {done.revision}")
    if done.runtime_role is not None:
        typer.echo(f"runtime role {done.runtime_role}: INSERT and SELECT on audit_log, no more")
    if done.loose_home is not None:
        typer.echo(
            f"warning: {settings.home} is open to other users (mode {done.loose_home:04o}): "
            f"chmod 700 {settings.home}",
            err=True,
        )


@app.command("trace")
def trace_command(
    ctx: typer.Context,
    identifier: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="An HTTP request id (X-Request-ID, the access log's request_id) or a decision id (the "
            "request_id of a triage answer).",
        ),
    ],
    json_output: JsonOpt = False,
) -> None:
    """Show every decision an HTTP request produced, or a decision with its HTTP request and siblings."""
    from deskpilot.workflows.decisions import trace_in_store

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        found = trace_in_store(settings, identifier)
    if json_output:
        emit_json(found.to_dict())
        return
    for line in _trace_lines(found):
        typer.echo(line)


_TRACE_COLUMNS = (
    "DECISION ID",
    "TENANT",
    "TICKET ID",
    "INTENT",
    "CONFIDENCE",
    "ROUTE",
    "MODEL VERSION",
    "TIME (UTC)",
    "HTTP REQUEST ID",
)


def _trace_lines(found: DecisionTrace) -> list[str]:
    """A heading that says what the id was, then one aligned row per decision (``*`` marks the id's own)."""
    from deskpilot.workflows.decisions import IdKind

    count = f"{len(found.decisions)} decision{'s' * (len(found.decisions) != 1)}"
    requests = ", ".join(found.http_request_ids)
    if found.matched_as == (IdKind.HTTP_REQUEST,):
        heading = f"HTTP request {found.identifier}: {count}"
    elif found.matched_as == (IdKind.DECISION,):
        source = f"HTTP request {requests}" if requests else "no HTTP request recorded"
        heading = f"decision {found.identifier} ({source}): {count}"
    else:
        heading = (
            f"{found.identifier} is an HTTP request id and a decision id: HTTP requests {requests}, {count}"
        )
    rows = [
        (
            ("* " if d.request_id == found.identifier else "  ") + d.request_id,
            d.tenant,
            d.ticket_id or "-",
            d.intent,
            f"{d.confidence:.3f}",
            d.route.value,
            d.model_version,
            f"{d.created_at:%Y-%m-%d %H:%M:%S}",
            d.http_request_id or "-",
        )
        for d in found.decisions
    ]
    header = ("  " + _TRACE_COLUMNS[0], *_TRACE_COLUMNS[1:])
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    return [heading, *table]


def _date(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--before {text!r}: expected a date (2026-01-31) or an ISO time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.command("purge")
def purge_command(
    ctx: typer.Context,
    before: Annotated[
        str,
        typer.Option(
            "--before",
            metavar="DATE",
            help="Delete what is older than this date or ISO time (UTC unless it says otherwise).",
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "purged from the CLI",
    json_output: JsonOpt = False,
) -> None:
    """Delete decisions made before DATE, with all their feedback, and shadow answers given before it, in
    every tenant; audited (the audit log itself is never purged)."""
    from deskpilot.workflows.retention import purge

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        done = purge(settings, _date(before), reason=reason)
    if json_output:
        emit_json(done.to_dict())
    else:
        typer.echo(f"purged before {done.before.isoformat()}: {_counts(done.deleted)}")
    _audited(done.audit, done.audit_error)


@app.command("erase")
def erase_command(
    ctx: typer.Context,
    ticket_id: Annotated[str, typer.Option("--ticket-id", help="The ticket whose records to erase.")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's [default: every tenant's].")
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the audit log (personal data in it is redacted).")
    ] = "erasure request",
    json_output: JsonOpt = False,
) -> None:
    """Delete every decision of a ticket, its feedback and shadow answers; the audit entry keeps a keyed
    hash of the ticket id and the counts, not the id."""
    from deskpilot.workflows.retention import erase

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        done = erase(settings, ticket_id, tenant=tenant, reason=reason)
    if json_output:
        emit_json(done.to_dict())
    else:
        where = f"tenant {tenant}" if tenant else "every tenant"
        typer.echo(f"erased ticket (hmac {done.ticket_digest[:16]}, {where}): {_counts(done.deleted)}")
    if done.unmatched_form is not None:
        typer.echo(
            f"warning: decisions logged since ticket ids are redacted store this one as "
            f"{done.unmatched_form!r}, which other tickets share: those were not erased",
            err=True,
        )
    _audited(done.audit, done.audit_error)
    if done.reindex_error is not None:
        typer.echo(f"error: {done.reindex_error}; run `deskpilot kb build --full`", err=True)
        raise typer.Exit(EXIT_FAILED)


def _counts(deleted: DeletedRows) -> str:
    return (
        f"{deleted.decisions} decisions, {deleted.feedback} feedback, {deleted.shadow} shadow answers, "
        f"{deleted.suggestions} suggestions, {deleted.knowledge} knowledge items"
    )


def _audited(receipt: object, error: object) -> None:
    from deskpilot.errors import AuditWriteError
    from deskpilot.workflows.audit import AuditReceipt

    if isinstance(receipt, AuditReceipt):
        say_audited([receipt])
    if isinstance(error, AuditWriteError):
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="The backup file to write (replaced).")
    ],
    json_output: JsonOpt = False,
) -> None:
    """Write a consistent backup of the store while the service runs: SQLite's backup API or pg_dump, with a
    manifest (revision, row counts, audit head, SHA-256). The audit key, ledger and API keys are not in it."""
    from deskpilot.workflows.backup import backup_store

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        done = backup_store(settings, output)
    if json_output:
        emit_json(done.to_dict())
        return
    manifest = done.manifest
    rows = ", ".join(f"{count} {name}" for name, count in manifest.tables.items() if count) or "no rows"
    typer.echo(f"backed up {manifest.source} (revision {manifest.revision}) to {done.output}: {rows}")
    typer.echo(f"sha256 {manifest.dump['sha256']} ({manifest.dump['size']:,} bytes, {manifest.dump['tool']})")


@app.command("restore")
def restore_command(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Option("--input", "-i", metavar="FILE", help="A file written by `deskpilot store backup`."),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Replace a store that holds data without asking.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Restore a backup into the store (stop the service first): checked against its manifest, swapped in
    whole or not at all, migrated to this release's schema, then its audit chain verified; exit 1 when the
    chain does not verify."""
    from deskpilot.workflows.backup import restore_store

    settings = state(ctx).settings
    ask = None if json_output or not sys.stdin.isatty() else _ask
    with reported_errors(as_json=json_output):
        done = restore_store(settings, source, yes=yes, confirm=ask)
    if json_output:
        emit_json(done.to_dict())
    else:
        for line in _restored_lines(done):
            typer.echo(line)
        if done.hint is not None:
            typer.echo(f"hint: {done.hint}", err=True)
    if not done.ok:
        raise typer.Exit(EXIT_FAILED)


def _ask(question: str) -> bool:
    return typer.confirm(question, default=False, err=True)


def _restored_lines(done: Restored) -> list[str]:
    backup = done.backup
    rows = ", ".join(f"{count} {name}" for name, count in done.tables.items() if count) or "no rows"
    lines = [
        f"restored {done.input} (taken {backup.created_at} from {backup.source}, revision {backup.revision}) "
        f"into {done.database}: {rows}",
        f"store schema at revision {done.revision}",
    ]
    if done.previous is not None:
        lines.append(f"replaced a store of {_plural(sum(done.previous.tables.values()), 'row')}")
    if done.dropped:
        lines.append(f"tables newer than the backup emptied: {', '.join(done.dropped)}")
    if done.audit is None:
        lines.append(f"audit chain NOT verified: {done.audit_error}")
        return lines
    result = done.audit.result
    if result.ok:
        head = "empty" if result.head is None else f"head {result.head.seq}:{result.head.hash[:12]}"
        lines.append(f"audit chain intact: {_plural(result.checked, 'entry', 'entries')}, {head}")
    else:
        lines.append(
            f"audit chain broken at seq {result.first_broken_seq}: {result.problem} ({result.detail})"
        )
    return lines


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
