"""``deskpilot store migrate|trace``: the decision store's schema, and one id through its decision log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from deskpilot.cli.common import JsonOpt, emit_json, reported_errors, state

if TYPE_CHECKING:
    from deskpilot.workflows.decisions import DecisionTrace

app = typer.Typer(help="The prediction and feedback store.", no_args_is_help=True)


@app.command("migrate")
def migrate_store(ctx: typer.Context) -> None:
    """Create or upgrade the store's tables (DESKPILOT_DATABASE_URL, default SQLite under the home)."""
    from deskpilot.store import migrate

    settings = state(ctx).settings
    with reported_errors():
        settings.home.mkdir(parents=True, exist_ok=True)
        revision = migrate.upgrade(settings.resolved_database_url)
    typer.echo(f"store schema at revision {revision}")


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
