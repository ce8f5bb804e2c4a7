"""Request and response bodies of the copilot's endpoints, one model per direction."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from deskpilot.api.schemas import Identifier, IntentScorePublic, Text, _Strict


class SimilarRequest(_Strict):
    text: Text = Field(description="The message to find similar tickets and articles for.")
    k: int = Field(default=5, ge=1, le=50, description="How many results (1-50).")


class RanksPublic(BaseModel):
    dense: int | None = Field(description="1-based rank by meaning (embeddings); null: not in that list.")
    lexical: int | None = Field(description="1-based rank by words (BM25); null: not in that list.")


class SimilarItemPublic(BaseModel):
    id: str
    kind: Literal["ticket", "article"]
    text: str | None = Field(default=None, description="A ticket's message (redacted).")
    title: str | None = Field(default=None, description="An article's title.")
    intent: str | None = Field(default=None, description="A resolved ticket's final intent.")
    intents: list[str] = Field(default_factory=list, description="The intents an article answers.")
    score: float = Field(
        description="Fused score of the two retrievers (by default 0.9 x cosine + 0.1 x BM25 relative to the "
        "query's best): higher is more similar."
    )
    ranks: RanksPublic


class SimilarPublic(BaseModel):
    results: list[SimilarItemPublic]
    index_version: int = Field(description="The retrieval index version that answered.")


class SuggestRequest(_Strict):
    text: Text | None = Field(default=None, description="A new message: it is triaged (and logged) first.")
    request_id: Identifier | None = Field(
        default=None, description="A decision already made by POST /v1/triage, by its request_id."
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.text is None) == (self.request_id is None):
            raise ValueError("give exactly one of text or request_id")
        return self


class SuggestTriagePublic(BaseModel):
    intent: str | None
    confidence: float
    route: str
    alternatives: list[IntentScorePublic]
    model_version: str
    request_id: str | None


class SourcePublic(SimilarItemPublic):
    number: int = Field(description="What the draft's citations [n] refer to.")
    answers: bool = Field(description="Whether this source was allowed to ground the draft.")


class DraftPublic(BaseModel):
    text: str = Field(description="The reply draft, each claim followed by its citation [n].")
    citations: list[int] = Field(description="Source numbers the draft cites.")
    provider: str = Field(description="extractive (no LLM) or the configured LLM provider's name.")
    needs_review: bool = Field(
        description="True when the ticket is routed to a person: a starting point only."
    )
    flags: list[str] = Field(description="What the output guard changed (unsupported, pii_redacted, ...).")


class SuggestPublic(BaseModel):
    suggestion_id: str = Field(description="Quote it in POST /v1/suggest/feedback.")
    triage: SuggestTriagePublic
    sources: list[SourcePublic]
    draft: DraftPublic | None = Field(description="Null when no grounded answer was found.")
    reason: str
    provider: str
    model: str | None
    prompt_version: str
    index_version: int
    flags: list[str]


class SuggestFeedbackRequest(_Strict):
    suggestion_id: Identifier
    verdict: Literal["accepted", "edited", "rejected"]
    edit_distance: int | None = Field(
        default=None,
        ge=0,
        description="For edited: characters changed (insertions, deletions, substitutions).",
    )
    final_text: Text | None = Field(
        default=None,
        description="For edited, instead of edit_distance: the reply sent; only its distance is kept.",
    )


class SuggestFeedbackPublic(BaseModel):
    suggestion_id: str
    verdict: str
    edit_distance: int | None
    recorded_at: datetime
