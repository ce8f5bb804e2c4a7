"""``deskpilot serve`` (the triage API), ``deskpilot store migrate`` (its database schema) and ``deskpilot
store trace`` (an HTTP request's decisions, or a decision's HTTP request)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deskpilot.cli.common import JsonOpt, emit_json, reported_errors, state
from deskpilot.config import Settings

if TYPE_CHECKING:
    from deskpilot.workflows.decisions import DecisionTrace

store_app = typer.Typer(help="The prediction and feedback store.", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Server processes sharing the port (env DESKPILOT_WORKERS) [default: 1].",
        ),
    ] = None,
) -> None:
    """Serve the triage API (the registry's champion, with the tfidf fallback) until interrupted."""
    import uvicorn

    from deskpilot.api.app import create_app
    from deskpilot.service.observability import configure_json_logging

    settings = state(ctx).settings
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    configure_json_logging()
    with reported_errors():
        app = create_app(settings)  # with workers too: a bad setting fails here, once, before any spawn
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(app, **options)
        return
    with reported_errors(), _worker_environment(settings):
        uvicorn.run(
            "deskpilot.api.worker:create_worker_app", factory=True, workers=settings.workers, **options
        )


@contextmanager
def _worker_environment(settings: Settings) -> Iterator[None]:
    """Hand the settings to the worker processes and give them one metrics folder; clean it up after."""
    from deskpilot.service.metrics import MULTIPROC_ENV
    from deskpilot.workflows.build import writable_store_url

    writable_store_url(settings)  # once, here: N workers creating one SQLite file at once would race
    metrics_dir = tempfile.mkdtemp(prefix="deskpilot-metrics-")
    saved = {name: os.environ.get(name) for name in ("DESKPILOT_HOME", "DESKPILOT_WORKERS", MULTIPROC_ENV)}
    os.environ["DESKPILOT_HOME"] = str(settings.home.resolve())
    os.environ["DESKPILOT_WORKERS"] = str(settings.workers)
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


@store_app.command("migrate")
def migrate_store(ctx: typer.Context) -> None:
    """Create or upgrade the store's tables (DESKPILOT_DATABASE_URL, default SQLite under the home)."""
    from deskpilot.store import migrate

    settings = state(ctx).settings
    with reported_errors():
        settings.home.mkdir(parents=True, exist_ok=True)
        revision = migrate.upgrade(settings.resolved_database_url)
    typer.echo(f"store schema at revision {revision}")


@store_app.command("trace")
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
