"""Request and response bodies, one model per direction; unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _no_nul(value: str) -> str:
    """PostgreSQL cannot store NUL in text; refused here, such a value would block the decision log."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_no_nul)]
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), AfterValidator(_no_nul)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TriageRequest(_Strict):
    text: Text = Field(description="The customer's message (trimmed; at most the configured max length).")
    id: Identifier | None = Field(default=None, description="Your ticket id, echoed back and logged.")
    channel: Channel | None = Field(
        default=None,
        description="The channel the message came through, as a short lowercase token (`email`, `chat`, "
        "`phone`, `web`, ...: letters, digits, `_` and `-`, at most 32). Logged with the decision; agents "
        "filter their queue by it.",
        examples=["email"],
    )


class TriageBatchRequest(_Strict):
    items: list[TriageRequest] = Field(min_length=1, description="Tickets, at most the configured limit.")


class FeedbackRequest(_Strict):
    request_id: Identifier
    correct_intent: Identifier = Field(
        description="One of the intents the serving models know, or `__other__` when none fits; anything "
        "else is refused (422 unknown_intent, whose details list them). Posting again replaces the verdict."
    )


class IntentScorePublic(BaseModel):
    intent: str
    confidence: float


class TriagePublic(BaseModel):
    intent: str | None = Field(description="Best intent; null when no model could answer.")
    confidence: float
    route: str = Field(description="auto: route without a person; human: a person decides.")
    alternatives: list[IntentScorePublic]
    model_version: str
    request_id: str = Field(description="Quote it in POST /v1/feedback.")
    id: str | None = None
    fallback: bool = Field(default=False, description="True when the fallback model (or nobody) answered.")
    reason: str | None = None
    review: bool = Field(
        default=False,
        description="True for an auto-routed ticket sampled for a person's review as well (the audit sample "
        "that measures the accuracy of auto routes): route it, and ask a person to confirm its intent.",
    )


class TriageBatchPublic(BaseModel):
    items: list[TriagePublic]


class FeedbackPublic(BaseModel):
    request_id: str
    correct_intent: str
    predicted_intent: str
    model_version: str
    recorded_at: datetime


class ServingModelPublic(BaseModel):
    uri: str
    name: str
    version: str
    family: str
    threshold: float | None
    target_precision: float | None
    classes: int


class RolloutPublic(BaseModel):
    stage: str = Field(description="none, shadow or canary")
    percent: float = Field(description="Share of traffic the challenger answers in a canary, in percent.")
    revision: int
    updated_at: str
    reason: str


class IntentAgreementPublic(BaseModel):
    intent: str
    compared: int
    agreement_rate: float


class PairedFeedbackPublic(BaseModel):
    judged: int = Field(description="Requests with feedback that both models answered.")
    champion_accuracy: float | None
    challenger_accuracy: float | None
    tenants: int = Field(
        default=0, description="Tenants whose verdicts these are; each decision counts once."
    )


class ShadowPublic(BaseModel):
    compared: int
    agreement_rate: float | None
    mean_confidence_shift: float | None = Field(description="Challenger minus champion confidence.")
    route_changes: dict[str, int]
    least_agreed_intents: list[IntentAgreementPublic]
    feedback: PairedFeedbackPublic | None = Field(
        default=None, description="Accuracy of each model on the same requests, where feedback exists."
    )


class ModelsPublic(BaseModel):
    """One entry per role (``champion``, ``challenger``, ``fallback``), as the metrics' ``role`` label."""

    champion: ServingModelPublic | None = Field(description="Answers every ticket not in a canary.")
    challenger: ServingModelPublic | None = Field(
        default=None, description="The version under rollout (shadow or canary), once loaded."
    )
    fallback: ServingModelPublic | None = Field(
        description="Answers when the model in line before it fails or runs out of time."
    )
    primary: ServingModelPublic | None = Field(
        description="The champion, under its first-version name; use `champion`.", deprecated=True
    )
    rollout: RolloutPublic | None = None
    shares: dict[str, float] = Field(default_factory=dict, description="Share of traffic per model URI.")
    shadow: ShadowPublic | None = Field(
        default=None, description="Shadow agreement since the challenger started."
    )


class HealthPublic(BaseModel):
    status: str


class ReadyPublic(BaseModel):
    ready: bool
    problems: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, object] = Field(default_factory=dict)


class ErrorPublic(BaseModel):
    error: ErrorDetail
