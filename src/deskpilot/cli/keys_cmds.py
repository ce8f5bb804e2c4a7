"""``deskpilot keys create|list|revoke``: API keys in the keys file the server re-reads without a restart.

Creating and revoking a key are appended to the audit log (key id, tenant and label; never the key or its
hash). A store that cannot be reached only warns, so that keys can be managed, above all revoked, during a
database outage; a store whose schema is behind refuses a ``create`` before the key exists, and fails a
``revoke`` after the key is revoked (exit 1, saying so).
"""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli import audit_cmds
from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, reported_errors, state
from deskpilot.config import Settings
from deskpilot.errors import UsageError
from deskpilot.service.keys import (
    KeyRecord,
    config_key_records,
    create_key,
    list_keys,
    revoke_key,
    validate_tenant,
)
from deskpilot.store.audit import KEY_CREATE, KEY_REVOKE

app = typer.Typer(help="Manage the API keys that map requests to tenants.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    label: Annotated[str | None, typer.Option("--label", help="A note to tell keys apart.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "created from the CLI",
    json_output: JsonOpt = False,
) -> None:
    """Create a key for a tenant and print it once; only a hash of it is stored."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        validate_tenant(tenant)
        audit_cmds.check_writable(settings)
        raw_key, record = create_key(settings.keys_file, tenant, label=label)
    if json_output:
        emit_json({"key": raw_key, **record.public()})
    else:
        typer.echo(raw_key)
    typer.echo(
        f"warning: copy this key now, it cannot be shown again "
        f"(key id {record.key_id}, tenant {record.tenant})",
        err=True,
    )
    if not _audit(settings, KEY_CREATE, record, reason):
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
def list_command(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List keys (file and configuration) by id, tenant, label and status; secrets are never shown."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        records = config_key_records(settings.api_keys) + list_keys(settings.keys_file)
    records = [r for r in records if tenant is None or r.tenant == tenant]
    if json_output:
        emit_json([r.public() for r in records])
        return
    if not records:
        typer.echo("no API keys yet: run `deskpilot keys create --tenant NAME`")
        return
    typer.echo(f"{'KEY ID':<9} {'TENANT':<24} {'CREATED':<26} {'STATUS':<8} {'SOURCE':<7} LABEL")
    for r in records:
        typer.echo(
            f"{r.key_id:<9} {r.tenant:<24} {r.created_at or '-':<26} {_status(r):<8} {r.source:<7} "
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
        configured = {r.key_id for r in config_key_records(settings.api_keys)}
        if key_id in configured:
            raise UsageError(f"key {key_id} comes from DESKPILOT_API_KEYS: remove it from the configuration")
        record = revoke_key(settings.keys_file, key_id)
    typer.echo(f"revoked key {record.key_id} (tenant {record.tenant})")
    if not _audit(settings, KEY_REVOKE, record, reason):
        raise typer.Exit(EXIT_FAILED)


def _audit(settings: Settings, action: str, record: KeyRecord, reason: str) -> bool:
    payload = {"key_id": record.key_id, "tenant": record.tenant, "label": record.label}
    return audit_cmds.record(settings, action, f"{record.tenant}/{record.key_id}", reason, payload)


def _status(record: KeyRecord) -> str:
    return "revoked" if record.revoked else "active"
