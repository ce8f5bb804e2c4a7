"""``POST /v1/feedback``: an agent's verdict on a decision of the same tenant."""

from __future__ import annotations

from fastapi import APIRouter

from deskpilot.api.deps import PartsDep, ServiceDep, TenantDep, charge
from deskpilot.api.schemas import ErrorPublic, FeedbackPublic, FeedbackRequest
from deskpilot.errors import NotFoundError, StoreNotFoundError

router = APIRouter(
    prefix="/v1",
    tags=["feedback"],
    responses={code: {"model": ErrorPublic} for code in (400, 401, 404, 413, 415, 422, 429, 503)},
)


@router.post(
    "/feedback",
    response_model=FeedbackPublic,
    summary="Record the correct intent of a decision",
    description=(
        "`correct_intent` is one of the intents the serving models know, or `__other__` when none of them "
        "fits; anything else is refused with 422 `unknown_intent`, whose `details.intents` lists them. "
        "One verdict per decision: posting again replaces it. 503 (with `Retry-After`) means the verdict "
        "was not kept, for instance while the decision itself still waits to be written: send it again."
    ),
)
async def feedback(
    body: FeedbackRequest, tenant: TenantDep, service: ServiceDep, parts: PartsDep
) -> FeedbackPublic:
    charge(parts, tenant, 1)
    try:
        record = await service.feedback(tenant.name, body.request_id, body.correct_intent)
    except StoreNotFoundError as exc:
        # another tenant's request looks exactly like a missing one
        raise NotFoundError(f"no decision with request_id {body.request_id!r}") from exc
    return FeedbackPublic(
        request_id=record.request_id,
        correct_intent=record.correct_intent,
        predicted_intent=record.predicted_intent,
        model_version=record.model_version,
        recorded_at=record.created_at,
    )
