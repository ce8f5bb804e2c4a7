"""``deskpilot audit verify|log``: check and read the hash-chained audit log, and the helpers other commands
use to write to it (``keys create|revoke`` today; promotions and rollbacks call the same store API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, state
from deskpilot.config import Settings
from deskpilot.errors import StoreError, StoreUnavailableError, UsageError
from deskpilot.store import migrate
from deskpilot.store.audit import AuditAnchor, AuditEntry, VerifyResult, default_actor
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.store.engine import parse_url

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
        expected = _parse_anchor(anchor)
        log = open_for_reading(settings)
        try:
            result = log.verify(expected)
        finally:
            log.close()
    if json_output:
        emit_json({"database": log.url, **result.to_dict()})
    else:
        typer.echo(_describe(result))
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
        log = open_for_reading(settings)
        try:
            if since is None:
                head = log.head()
                since = 0 if head is None else max(0, head.seq - limit)
            entries = log.entries(since_seq=since, limit=limit)
        finally:
            log.close()
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


def open_for_reading(settings: Settings) -> SqlAuditLog:
    """The log in the store; a missing SQLite file is an error, not an empty (and so 'intact') log."""
    return SqlAuditLog(existing_store_url(settings, "nothing was audited here yet"))


def existing_store_url(settings: Settings, why: str) -> str:
    """The store's URL for a read; :class:`StoreError` when it is a SQLite file that does not exist (a read
    must not create an empty store and report on it)."""
    url = settings.resolved_database_url
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.exists():
            raise StoreError(
                f"no store database at {path}: {why}, or DESKPILOT_DATABASE_URL points elsewhere"
            )
    return url


def open_for_append(settings: Settings) -> SqlAuditLog:
    """The log, ready to append: a SQLite store is created or upgraded in place, as ``deskpilot store
    migrate`` would; any other database is left to its operator (a schema behind fails at the append)."""
    url = settings.resolved_database_url
    if parse_url(url).get_backend_name() == "sqlite":
        settings.home.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(url)
    return SqlAuditLog(url)


def check_writable(settings: Settings) -> None:
    """Raise :class:`StoreError` when appending cannot work until the operator acts (a schema behind, a
    database of newer code); an unreachable store passes, since that must not block key management."""
    try:
        log = open_for_append(settings)
        try:
            log.head()
        finally:
            log.close()
    except StoreUnavailableError:
        return


def record(settings: Settings, action: str, target: str, reason: str, payload: dict[str, Any]) -> bool:
    """Append an entry for a change that already happened, saying on stderr what became of it.

    ``False`` means the command must fail: the store refuses for a reason the operator has to fix (schema
    behind). An unreachable store only warns, so that keys can be managed, above all revoked, during a
    database outage. The change itself is never undone.
    """
    try:
        log = open_for_append(settings)
        try:
            entry: AuditEntry = log.append(default_actor(), action, target, reason, payload)
        finally:
            log.close()
    except StoreUnavailableError as error:
        typer.echo(
            f"warning: the audit entry could not be written (store unavailable): {error.message}", err=True
        )
        return True
    except StoreError as error:
        typer.echo(f"error: the audit entry could not be written: {error.message}", err=True)
        return False
    typer.echo(f"audited as entry {entry.seq} ({action} {target})", err=True)
    return True


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
