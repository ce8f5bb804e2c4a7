"""``POST /v1/triage`` and ``POST /v1/triage/batch``.

A batch's item count is checked before its items are validated (:func:`refuse_oversized_batch`), and every
request has paid its door fee before its body was read (:class:`deskpilot.api.middleware.TenantGate`): a
refused request costs its tenant tokens, not the service CPU. 503 ``overloaded`` (with ``Retry-After``) means
the model queue is full; the tenant holding most of it is refused first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from deskpilot.api.deps import PartsDep, ServiceDep, TenantDep, charge, refuse_oversized_batch
from deskpilot.api.schemas import (
    ErrorPublic,
    TriageBatchPublic,
    TriageBatchRequest,
    TriagePublic,
    TriageRequest,
)
from deskpilot.domain import Ticket
from deskpilot.errors import RequestValidationError
from deskpilot.service.triage import Answer
from deskpilot.workflows.serving import ServingStack

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 408, 413, 415, 422, 429, 503)
}
router = APIRouter(prefix="/v1", tags=["triage"], responses=ERRORS)


def _tickets(items: Sequence[TriageRequest], parts: ServingStack) -> list[Ticket]:
    limit = parts.limits.max_text_length
    too_long = [i for i, item in enumerate(items) if len(item.text) > limit]
    if too_long:
        raise RequestValidationError(
            f"text is longer than {limit} characters",
            details={
                "errors": [
                    {"field": f"items.{i}.text" if len(items) > 1 else "text", "problem": "too long"}
                    for i in too_long[:20]
                ],
                "max_text_length": limit,
            },
        )
    return [Ticket(text=item.text, id=item.id, channel=item.channel) for item in items]


def _public(answer: Answer) -> dict[str, Any]:
    """The TriagePublic shape as plain JSON values.

    Built by hand and sent as bytes: re-validating our own output against the response model cost about a
    tenth of the service's CPU per request. ``test_api`` checks every response against the schema.
    """
    decision = answer.decision
    prediction = decision.prediction
    return {
        "intent": prediction.intent or None,
        "confidence": prediction.confidence,
        "route": str(decision.route),
        "alternatives": [{"intent": a.intent, "confidence": a.confidence} for a in prediction.alternatives],
        "model_version": decision.model_version,
        "request_id": decision.request_id,
        "id": answer.ticket_id,
        "fallback": decision.fallback,
        "reason": decision.reason or None,
        "review": decision.review,
    }


def _json(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@router.post("/triage", response_model=TriagePublic, summary="Triage one message")
async def triage(
    body: TriageRequest, tenant: TenantDep, service: ServiceDep, parts: PartsDep, request: Request
) -> Response:
    tickets = _tickets([body], parts)
    charge(parts, tenant, 1)
    answers = await service.triage(tenant.name, tickets, http_request_id=request.state.request_id)
    return _json(_public(answers[0]))


@router.post(
    "/triage/batch",
    response_model=TriageBatchPublic,
    summary="Triage several messages",
    dependencies=[Depends(refuse_oversized_batch)],
)
async def triage_batch(
    body: TriageBatchRequest, tenant: TenantDep, service: ServiceDep, parts: PartsDep, request: Request
) -> Response:
    tickets = _tickets(body.items, parts)
    charge(parts, tenant, len(tickets))
    answers = await service.triage(tenant.name, tickets, http_request_id=request.state.request_id)
    return _json({"items": [_public(a) for a in answers]})
