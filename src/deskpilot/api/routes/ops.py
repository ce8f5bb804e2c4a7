"""Operations: ``/healthz``, ``/readyz``, ``/metrics`` and ``GET /v1/models``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from deskpilot.api.deps import PartsDep, ServiceDep, TenantDep
from deskpilot.api.schemas import ErrorPublic, HealthPublic, ModelsPublic, ReadyPublic

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthPublic, summary="The process is alive")
async def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    responses={503: {"model": ReadyPublic}},
    summary="A model is loaded and the store is reachable",
)
async def readyz(service: ServiceDep) -> JSONResponse:
    ready, problems = await asyncio.to_thread(service.ready)
    body = ReadyPublic(ready=ready, problems=problems).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(parts: PartsDep) -> Response:
    return Response(parts.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    response_model=ModelsPublic,
    responses={401: {"model": ErrorPublic}},
    summary="Which models serve, at what share",
)
async def models(_tenant: TenantDep, service: ServiceDep) -> ModelsPublic:
    return ModelsPublic.model_validate(service.serving())
