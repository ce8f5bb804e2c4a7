"""``POST /v1/similar``, ``POST /v1/suggest`` and ``POST /v1/suggest/feedback``: the agent's copilot.

Every search runs inside the caller's tenant partition of the index; a suggestion's draft cites only the
sources it returns. 503 ``knowledge_index_unavailable`` until an operator has imported knowledge.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from deskpilot.api.copilot_schemas import (
    DraftPublic,
    RanksPublic,
    SimilarItemPublic,
    SimilarPublic,
    SimilarRequest,
    SourcePublic,
    SuggestFeedbackPublic,
    SuggestFeedbackRequest,
    SuggestPublic,
    SuggestRequest,
    SuggestTriagePublic,
)
from deskpilot.api.deps import PartsDep, TenantDep, charge
from deskpilot.api.schemas import ErrorPublic, IntentScorePublic
from deskpilot.copilot.grounding import NumberedSource
from deskpilot.errors import NotFoundError, RequestValidationError, StoreNotFoundError
from deskpilot.retrieval.items import Hit
from deskpilot.service.copilot import CopilotService, SuggestOutcome
from deskpilot.workflows.serving import ServingStack

router = APIRouter(
    prefix="/v1",
    tags=["copilot"],
    responses={code: {"model": ErrorPublic} for code in (400, 401, 404, 408, 413, 415, 422, 429, 503)},
)


async def get_copilot(parts: PartsDep) -> CopilotService:
    return parts.copilot


CopilotDep = Annotated[CopilotService, Depends(get_copilot)]


def _check_length(text: str, parts: ServingStack, field: str = "text", limit: int | None = None) -> None:
    limit = parts.limits.max_text_length if limit is None else limit
    if len(text) > limit:
        raise RequestValidationError(
            f"{field} is longer than {limit} characters",
            details={"errors": [{"field": field, "problem": "too long"}], "max_text_length": limit},
        )


def _item(hit: Hit) -> dict[str, object]:
    item = hit.item
    ticket = item.kind == "ticket"
    return {
        "id": item.id,
        "kind": item.kind,
        "text": item.text if ticket else None,
        "title": None if ticket else (item.title or item.id),
        "intent": item.intents[0] if ticket and item.intents else None,
        "intents": [] if ticket else list(item.intents),
        "score": round(hit.score, 6),
        "ranks": RanksPublic(dense=hit.dense_rank, lexical=hit.lexical_rank),
    }


@router.post(
    "/similar",
    response_model=SimilarPublic,
    summary="Similar resolved tickets and help articles",
    description="Hybrid retrieval (embeddings and BM25, fused) over the caller's tenant only.",
)
async def similar(
    body: SimilarRequest, tenant: TenantDep, parts: PartsDep, copilot: CopilotDep
) -> SimilarPublic:
    _check_length(body.text, parts)
    charge(parts, tenant, 1)
    result = await copilot.similar(tenant.name, body.text, body.k)
    return SimilarPublic(
        results=[SimilarItemPublic.model_validate(_item(hit)) for hit in result.hits],
        index_version=result.index_version,
    )


def _source(source: NumberedSource, answering: set[int]) -> SourcePublic:
    return SourcePublic.model_validate(
        {**_item(source.hit), "number": source.number, "answers": source.number in answering}
    )


def _suggestion(outcome: SuggestOutcome) -> SuggestPublic:
    s = outcome.suggestion
    answering = set(s.answering)
    return SuggestPublic(
        suggestion_id=s.suggestion_id,
        triage=SuggestTriagePublic(
            intent=s.triage.intent or None,
            confidence=s.triage.confidence,
            route=s.triage.route,
            alternatives=[IntentScorePublic(intent=i, confidence=c) for i, c in outcome.alternatives],
            model_version=outcome.model_version,
            request_id=s.triage.request_id,
        ),
        sources=[_source(source, answering) for source in s.sources],
        draft=None
        if s.draft is None
        else DraftPublic(
            text=s.draft.text,
            citations=list(s.draft.citations),
            provider=s.draft.provider,
            needs_review=s.draft.needs_review,
            flags=list(s.draft.flags),
        ),
        reason=s.reason,
        provider=s.provider,
        model=s.model,
        prompt_version=s.prompt_version,
        index_version=outcome.index_version,
        flags=list(s.flags),
    )


@router.post(
    "/suggest",
    response_model=SuggestPublic,
    summary="Sources and a grounded reply draft",
    description=(
        "Give `text` (triaged first, like POST /v1/triage) or the `request_id` of an earlier decision. "
        "`draft` is null, with the `reason`, when nothing retrieved can answer the message: route it to a "
        "person. Only the draft may come from an LLM; triage never does."
    ),
)
async def suggest(
    body: SuggestRequest, tenant: TenantDep, parts: PartsDep, copilot: CopilotDep, request: Request
) -> SuggestPublic:
    if body.text is not None:
        _check_length(body.text, parts)
    charge(parts, tenant, 1)
    outcome = await copilot.suggest(
        tenant.name, text=body.text, request_id=body.request_id, http_request_id=request.state.request_id
    )
    return _suggestion(outcome)


@router.post(
    "/suggest/feedback",
    response_model=SuggestFeedbackPublic,
    summary="Record whether a draft was accepted, edited or rejected",
    description="One verdict per suggestion: posting again replaces it. `final_text` is never stored.",
)
async def suggest_feedback(
    body: SuggestFeedbackRequest, tenant: TenantDep, parts: PartsDep, copilot: CopilotDep
) -> SuggestFeedbackPublic:
    if body.final_text is not None:  # a reply may be longer than a customer's message, within reason
        limit = max(parts.limits.max_text_length, 2 * parts.settings.copilot_max_draft_chars)
        _check_length(body.final_text, parts, "final_text", limit)
    if body.verdict == "edited" and body.edit_distance is None and body.final_text is None:
        raise RequestValidationError(
            "an edited verdict needs edit_distance or final_text",
            details={"errors": [{"field": "edit_distance", "problem": "missing"}]},
        )
    charge(parts, tenant, 1)
    try:
        record = await copilot.feedback(
            tenant.name,
            body.suggestion_id,
            body.verdict,
            edit_distance=body.edit_distance,
            final_text=body.final_text,
        )
    except StoreNotFoundError as exc:
        raise NotFoundError(f"no suggestion with suggestion_id {body.suggestion_id!r}") from exc
    return SuggestFeedbackPublic(
        suggestion_id=record.suggestion_id,
        verdict=record.verdict,
        edit_distance=record.edit_distance,
        recorded_at=record.created_at,
    )
