"""``deskpilot keys create|list|revoke``: API keys in the keys file the server re-reads without a restart.

Creating and revoking a key are appended to the audit log (key id, tenant and label; never the key or its
hash) by :mod:`deskpilot.workflows.keys`. A revocation never waits for the store: while it cannot be
reached, the entry is queued and the command warns; a store whose schema is behind fails a ``revoke`` after
the key is revoked (exit 1, saying so). A ``create`` fails closed: no key is created (or shown) unless its
entry is in the audit log.
"""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, say_audited, state
from deskpilot.service.keys import KeyRecord
from deskpilot.workflows import keys

app = typer.Typer(help="Manage the API keys that map requests to tenants.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    label: Annotated[str | None, typer.Option("--label", help="A note to tell keys apart.")] = None,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="agent (works the tenant's queue in the console) or operator (also steers models).",
        ),
    ] = "agent",
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "created from the CLI",
    json_output: JsonOpt = False,
) -> None:
    """Create a key for a tenant and print it once; only a hash of it is stored."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        created = keys.create(settings, tenant, label=label, role=role, reason=reason)
    raw_key, record = created.raw_key, created.record
    if json_output:
        emit_json({"key": raw_key, **record.public()})
    else:
        typer.echo(raw_key)
    typer.echo(
        f"warning: copy this key now, it cannot be shown again "
        f"(key id {record.key_id}, tenant {record.tenant}, role {record.role})",
        err=True,
    )
    if created.audit is not None:
        say_audited([created.audit])


@app.command("list")
def list_command(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List keys (file and configuration) by id, tenant, label and status; secrets are never shown."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        records = keys.listing(settings, tenant=tenant)
    if json_output:
        emit_json([r.public() for r in records])
        return
    if not records:
        typer.echo("no API keys yet: run `deskpilot keys create --tenant NAME`")
        return
    typer.echo(f"{'KEY ID':<9} {'TENANT':<24} {'ROLE':<9} {'CREATED':<26} {'STATUS':<8} {'SOURCE':<7} LABEL")
    for r in records:
        typer.echo(
            f"{r.key_id:<9} {r.tenant:<24} {r.role:<9} {r.created_at or '-':<26} {_status(r):<8} "
            f"{r.source:<7} "
            f"{r.label or ''}".rstrip()
        )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The 8-hex-digit key id that `deskpilot keys list` shows.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "revoked from the CLI",
) -> None:
    """Revoke a key; a running server stops accepting it within about a second."""
    settings = state(ctx).settings
    with reported_errors():
        revoked = keys.revoke(settings, key_id, reason=reason)
    record = revoked.record
    typer.echo(f"revoked key {record.key_id} (tenant {record.tenant})")
    if revoked.audit is not None:
        say_audited([revoked.audit])
    if revoked.audit_error is not None:
        typer.echo(f"error: {revoked.audit_error.message}", err=True)
        raise typer.Exit(EXIT_FAILED)


def _status(record: KeyRecord) -> str:
    return "revoked" if record.revoked else "active"
