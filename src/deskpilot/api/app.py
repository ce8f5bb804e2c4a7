"""``create_app(settings)``: the HTTP face of the triage service.

Everything the service needs is assembled by :class:`deskpilot.workflows.serving.ServingStack` (checked at
construction, started and stopped by the lifespan); this module only wires HTTP to it: routes, error
handlers and middleware. Nothing happens at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from deskpilot import __version__
from deskpilot.api.errors import install_error_handlers
from deskpilot.api.middleware import BodyGuard, RequestContext, TenantGate
from deskpilot.api.routes import copilot, feedback, ops, triage
from deskpilot.api.server import HEADER_TIMEOUT_STATE
from deskpilot.config import Settings
from deskpilot.console.app import mount_console, start_console, stop_console
from deskpilot.workflows.serving import Overrides, ServingStack

__all__ = ["DESCRIPTION", "Overrides", "create_app"]

logger = logging.getLogger(__name__)

DESCRIPTION = """Triage support messages: intent, calibrated confidence, and whether the ticket can be routed
automatically (`auto`) or needs a person (`human`). Authenticate with `Authorization: Bearer <key>`; every
error is `{"error": {"code", "message", "details"}}` with a stable code."""


def create_app(settings: Settings, overrides: Overrides | None = None) -> FastAPI:
    stack = ServingStack(settings, overrides)  # a bad policy, key file or limit fails here, before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await stack.start()
        app.state.parts = stack
        start_console(app, stack)
        if settings.ops_key is None and settings.metrics_port is None:
            logger.warning(
                "GET /metrics is public and names every tenant: "
                "set DESKPILOT_OPS_KEY or DESKPILOT_METRICS_PORT"
            )
        try:
            yield {HEADER_TIMEOUT_STATE: settings.header_timeout_s}  # read by the server's protocol
        finally:
            await stop_console(app)
            await stack.stop()

    app = FastAPI(
        title="DeskPilot triage API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.metrics = stack.metrics
    install_error_handlers(app)
    app.include_router(triage.router)
    app.include_router(feedback.router)
    app.include_router(copilot.router)
    app.include_router(ops.router)
    mount_console(app)
    gate = TenantGate(
        authenticate=stack.keys.authenticate,
        limiter=stack.limiter,
        metrics=stack.metrics,
        bytes_per_token=settings.rate_limit_bytes_per_token,
    )
    app.add_middleware(
        BodyGuard, max_body_bytes=settings.max_body_bytes, gate=gate, body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(
        RequestContext,
        metrics=stack.metrics,
        tracer=stack.tracer,
        redact=stack.redactor.redact,
        known_paths=frozenset(app.openapi()["paths"]),  # the document is built once, here
    )
    return app
