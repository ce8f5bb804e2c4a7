"""``deskpilot serve`` (the triage API) and ``deskpilot store migrate`` (its database schema)."""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import reported_errors, state

store_app = typer.Typer(help="The prediction and feedback store.", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Serve the triage API (the registry's champion, with the tfidf fallback) until interrupted."""
    import uvicorn

    from deskpilot.api.app import create_app
    from deskpilot.service.observability import configure_json_logging

    settings = state(ctx).settings
    configure_json_logging()
    with reported_errors():
        app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


@store_app.command("migrate")
def migrate_store(ctx: typer.Context) -> None:
    """Create or upgrade the store's tables (DESKPILOT_DATABASE_URL, default SQLite under the home)."""
    from deskpilot.store import migrate

    settings = state(ctx).settings
    with reported_errors():
        settings.home.mkdir(parents=True, exist_ok=True)
        revision = migrate.upgrade(settings.resolved_database_url)
    typer.echo(f"store schema at revision {revision}")
