"""``deskpilot serve`` (the triage API and the console; ``deskpilot console`` says where to sign in),
``deskpilot store migrate`` (its database schema) and ``deskpilot store trace`` (an HTTP request's
decisions, or a decision's HTTP request)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deskpilot.cli.common import reported_errors, state
from deskpilot.config import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


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
    from deskpilot.api.server import uvicorn_options
    from deskpilot.service.observability import configure_json_logging

    settings = state(ctx).settings
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    configure_json_logging()
    with reported_errors():
        app = create_app(settings)  # with workers too: a bad setting fails here, once, before any spawn
    options: dict[str, Any] = {"host": host, "port": port, **uvicorn_options(settings)}
    if settings.workers == 1:
        with _metrics_server(settings, app.state.metrics.registry):
            uvicorn.run(app, **options)
        return
    with (
        reported_errors(),
        _worker_environment(settings) as metrics_dir,
        _metrics_server(settings, _multiprocess_registry(metrics_dir)),
    ):
        uvicorn.run(
            "deskpilot.api.worker:create_worker_app", factory=True, workers=settings.workers, **options
        )


def console(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="Server processes sharing the port [default: 1]."),
    ] = None,
) -> None:
    """Serve the web console (and the API beside it): `deskpilot serve`, saying where to sign in."""
    typer.echo(
        f"console at http://{host}:{port}/console: sign in with a key that has a role "
        "(`deskpilot keys create --tenant T --role agent|operator`)",
        err=True,
    )
    serve(ctx, host=host, port=port, workers=workers)


def _multiprocess_registry(metrics_dir: str) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    return registry


@contextmanager
def _metrics_server(settings: Settings, registry: CollectorRegistry) -> Iterator[None]:
    """With ``DESKPILOT_METRICS_PORT``, the metrics on a port of their own (the API's /metrics is then 404);
    with several workers this parent process serves the sums over all of them."""
    if settings.metrics_port is None:
        yield
        return
    from prometheus_client import start_http_server

    server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def _worker_environment(settings: Settings) -> Iterator[str]:
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
        yield metrics_dir
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)
