"""Dependencies the routes declare: the service, the authenticated tenant, the rate limit.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency on a worker thread, and three thread
hops per request cost more than the model call of the tfidf family.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request

from deskpilot.errors import AuthenticationError, PayloadTooLargeError, RateLimitedError
from deskpilot.service.keys import Tenant, bearer_token
from deskpilot.service.triage import TriageService
from deskpilot.workflows.serving import ServingStack


async def get_parts(request: Request) -> ServingStack:
    """The stack ``create_app`` keeps on ``app.state.parts``."""
    parts: ServingStack = request.app.state.parts
    return parts


PartsDep = Annotated[ServingStack, Depends(get_parts)]


async def get_service(parts: PartsDep) -> TriageService:
    return parts.service


async def get_tenant(request: Request, parts: PartsDep) -> Tenant:
    """The tenant the ``Authorization: Bearer`` key belongs to; 401 otherwise (the key is never logged)."""
    tenant = parts.keys.authenticate(bearer_token(request.headers.get("authorization")))
    if tenant is None:
        parts.metrics.auth_failures.inc()
        raise AuthenticationError("a valid API key is required: Authorization: Bearer <key>")
    request.state.tenant = tenant.name
    return tenant


ServiceDep = Annotated[TriageService, Depends(get_service)]
TenantDep = Annotated[Tenant, Depends(get_tenant)]


def charge(parts: ServingStack, tenant: Tenant, cost: int) -> None:
    """Take ``cost`` tokens from the tenant's bucket or refuse with 429 and ``Retry-After``."""
    decision = parts.limiter.acquire(tenant.name, cost)
    if decision.allowed:
        return
    if decision.exceeds_burst:
        raise PayloadTooLargeError(
            f"{cost} tickets exceed this tenant's burst limit; send smaller batches",
            details={"tickets": cost},
        )
    parts.metrics.rate_limited.labels(tenant.name).inc()
    retry_after = max(1, math.ceil(decision.retry_after_s))
    raise RateLimitedError(
        f"rate limit reached for tenant {tenant.name}; retry in {retry_after}s",
        details={"retry_after_s": retry_after},
    )
