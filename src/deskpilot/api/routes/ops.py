"""Operations: ``/healthz``, ``/readyz``, ``/metrics`` and ``GET /v1/models``.

``/readyz`` answers everyone with its status (load balancers need no key) but says why it is not ready only
to the operator key: the reasons name the database, its host or its file. They go to the log, once per
change. ``/metrics`` is public unless an operator key is set (then it needs it) or the metrics have a port of
their own (then this route is 404 and ``deskpilot serve`` serves them there).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from deskpilot.api.deps import PartsDep, ServiceDep, TenantDep, is_operator
from deskpilot.api.schemas import ErrorPublic, HealthPublic, ModelsPublic, ReadyPublic
from deskpilot.errors import AuthenticationError, NotFoundError

router = APIRouter(tags=["operations"])
logger = logging.getLogger(__name__)
NOT_READY = "not ready; the reasons are in the service log (or send the operator key)"


@router.get("/healthz", response_model=HealthPublic, summary="The process is alive")
async def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    responses={503: {"model": ReadyPublic}},
    summary="A model is loaded and the store is reachable (the reasons only with the operator key)",
)
async def readyz(request: Request, service: ServiceDep, parts: PartsDep) -> JSONResponse:
    ready, problems = await asyncio.to_thread(service.ready)
    if tuple(problems) != getattr(request.app.state, "ready_problems", ()):
        request.app.state.ready_problems = tuple(problems)
        if problems:
            logger.warning("not ready: %s", "; ".join(problems))
    shown = problems if ready or is_operator(request, parts) else [NOT_READY]
    body = ReadyPublic(ready=ready, problems=shown).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (with the operator key when one is set)",
    response_class=Response,
    responses={401: {"model": ErrorPublic}, 404: {"model": ErrorPublic}},
)
async def metrics(request: Request, parts: PartsDep) -> Response:
    settings = parts.settings
    if settings.metrics_port is not None:
        raise NotFoundError("Not Found")  # as for any route that does not exist
    if settings.ops_key and not is_operator(request, parts):
        raise AuthenticationError("the metrics need the operator key: Authorization: Bearer <key>")
    return Response(parts.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    response_model=ModelsPublic,
    responses={401: {"model": ErrorPublic}},
    summary="Which models serve, at what share",
)
async def models(_tenant: TenantDep, service: ServiceDep) -> ModelsPublic:
    return ModelsPublic.model_validate(service.serving())
