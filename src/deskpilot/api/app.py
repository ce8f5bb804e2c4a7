"""``create_app(settings)``: the HTTP face of the triage service.

Everything the service needs is assembled by :class:`deskpilot.workflows.serving.ServingStack` (checked at
construction, started and stopped by the lifespan); this module only wires HTTP to it: routes, error
handlers and middleware. Nothing happens at import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from deskpilot import __version__
from deskpilot.api.errors import install_error_handlers
from deskpilot.api.middleware import BodyGuard, RequestContext
from deskpilot.api.routes import feedback, ops, triage
from deskpilot.config import Settings
from deskpilot.workflows.serving import Overrides, ServingStack

__all__ = ["DESCRIPTION", "Overrides", "create_app"]

DESCRIPTION = """Triage support messages: intent, calibrated confidence, and whether the ticket can be routed
automatically (`auto`) or needs a person (`human`). Authenticate with `Authorization: Bearer <key>`; every
error is `{"error": {"code", "message", "details"}}` with a stable code."""


def create_app(settings: Settings, overrides: Overrides | None = None) -> FastAPI:
    stack = ServingStack(settings, overrides)  # a bad policy, key file or limit fails here, before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await stack.start()
        app.state.parts = stack
        try:
            yield
        finally:
            await stack.stop()

    app = FastAPI(
        title="DeskPilot triage API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(triage.router)
    app.include_router(feedback.router)
    app.include_router(ops.router)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=stack.metrics, tracer=stack.tracer)
    return app
