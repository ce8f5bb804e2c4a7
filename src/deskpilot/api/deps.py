"""Dependencies the routes declare: the service, the authenticated tenant, the rate limit.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency on a worker thread, and three thread
hops per request cost more than the model call of the tfidf family.

A request to ``/v1/`` is authenticated, and pays its door fee, in :class:`deskpilot.api.middleware.TenantGate`
before its body is read; the route charges the rest of its cost here (:func:`charge`), so what a request
costs does not depend on whether it fails after the door.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from deskpilot.errors import AuthenticationError, PayloadTooLargeError, RateLimitedError
from deskpilot.service.keys import Tenant, bearer_token
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.triage import TriageService
from deskpilot.workflows.serving import ServingStack

TENANT_STATE = "deskpilot.tenant"  # the Tenant the gate admitted, in the request's scope state


@dataclass
class _Prepaid:
    tokens: int


_PREPAID: ContextVar[_Prepaid | None] = ContextVar("deskpilot_prepaid", default=None)


@contextmanager
def prepaid(tokens: int) -> Iterator[None]:
    """Within it (one request's task), :func:`charge` counts ``tokens`` already taken from the bucket."""
    reset = _PREPAID.set(_Prepaid(tokens))
    try:
        yield
    finally:
        _PREPAID.reset(reset)


async def get_parts(request: Request) -> ServingStack:
    """The stack ``create_app`` keeps on ``app.state.parts``."""
    parts: ServingStack = request.app.state.parts
    return parts


PartsDep = Annotated[ServingStack, Depends(get_parts)]


async def get_service(parts: PartsDep) -> TriageService:
    return parts.service


async def get_tenant(request: Request, parts: PartsDep) -> Tenant:
    """The tenant the ``Authorization: Bearer`` key belongs to; 401 otherwise (the key is never logged)."""
    admitted = request.scope.get("state", {}).get(TENANT_STATE)
    if isinstance(admitted, Tenant):
        return admitted
    tenant = parts.keys.authenticate(bearer_token(request.headers.get("authorization")))
    if tenant is None:
        parts.metrics.auth_failures.inc()
        raise AuthenticationError("a valid API key is required: Authorization: Bearer <key>")
    request.state.tenant = tenant.name
    return tenant


ServiceDep = Annotated[TriageService, Depends(get_service)]
TenantDep = Annotated[Tenant, Depends(get_tenant)]


def charge(parts: ServingStack, tenant: Tenant, cost: int) -> None:
    """Take ``cost`` tokens (less what the request paid at the door) from the tenant's bucket, or refuse
    with 429 and ``Retry-After``; a cost no bucket can hold is 413."""
    rate, burst = parts.limiter.limits_for(tenant.name)
    if rate > 0 and cost > burst:
        raise PayloadTooLargeError(
            f"{cost} tickets exceed this tenant's burst limit; send smaller batches",
            details={"tickets": cost},
        )
    paid = _PREPAID.get()
    owed = cost
    if paid is not None:
        owed = max(0, cost - paid.tokens)
        paid.tokens = max(0, paid.tokens - cost)
    if owed == 0:
        return
    decision = parts.limiter.acquire(tenant.name, owed)
    if decision.allowed:
        return
    raise rate_limited(parts.metrics, tenant.name, decision.retry_after_s)


def rate_limited(metrics: ServiceMetrics, tenant: str, retry_after_s: float) -> RateLimitedError:
    """The 429 for ``tenant``, counted."""
    metrics.rate_limited.labels(tenant).inc()
    retry_after = max(1, math.ceil(retry_after_s))
    return RateLimitedError(
        f"rate limit reached for tenant {tenant}; retry in {retry_after}s",
        details={"retry_after_s": retry_after},
    )


async def refuse_oversized_batch(request: Request, parts: PartsDep) -> None:
    """413 for a batch with more items than allowed, before any item is validated.

    FastAPI parses the JSON body before it solves dependencies and validates the body after them, so this
    sees the parsed items (``Request.json`` is cached) while 75,000 invalid ones have not cost a thing yet.
    """
    try:
        body = await request.json()
    except ValueError:
        return  # not JSON: the framework answers 400
    items = body.get("items") if isinstance(body, dict) else None
    limit = parts.limits.max_batch_items
    if isinstance(items, list) and len(items) > limit:
        raise PayloadTooLargeError(
            f"{len(items)} items is over the batch limit of {limit}", details={"max_batch_items": limit}
        )


def is_operator(request: Request, parts: ServingStack) -> bool:
    """Whether the request carries the operator key (``DESKPILOT_OPS_KEY``); never true when none is set."""
    expected = parts.settings.ops_key
    given = bearer_token(request.headers.get("authorization"))
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
