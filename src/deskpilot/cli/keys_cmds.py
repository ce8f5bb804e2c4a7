"""``deskpilot keys create|list|revoke``: API keys in the keys file the server re-reads without a restart."""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import JsonOpt, emit_json, reported_errors, state
from deskpilot.errors import UsageError
from deskpilot.service.keys import KeyRecord, config_key_records, create_key, list_keys, revoke_key

app = typer.Typer(help="Manage the API keys that map requests to tenants.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    label: Annotated[str | None, typer.Option("--label", help="A note to tell keys apart.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Create a key for a tenant and print it once; only a hash of it is stored."""
    with reported_errors(as_json=json_output):
        raw_key, record = create_key(state(ctx).settings.keys_file, tenant, label=label)
    if json_output:
        emit_json({"key": raw_key, **record.public()})
    else:
        typer.echo(raw_key)
    typer.echo(
        f"warning: copy this key now, it cannot be shown again "
        f"(key id {record.key_id}, tenant {record.tenant})",
        err=True,
    )


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
) -> None:
    """Revoke a key; a running server stops accepting it within about a second."""
    settings = state(ctx).settings
    with reported_errors():
        configured = {r.key_id for r in config_key_records(settings.api_keys)}
        if key_id in configured:
            raise UsageError(f"key {key_id} comes from DESKPILOT_API_KEYS: remove it from the configuration")
        record = revoke_key(settings.keys_file, key_id)
    typer.echo(f"revoked key {record.key_id} (tenant {record.tenant})")


def _status(record: KeyRecord) -> str:
    return "revoked" if record.revoked else "active"
