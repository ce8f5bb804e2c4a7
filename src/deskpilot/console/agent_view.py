"""What the agent's pages show, computed from store records and the serving models: why a ticket was routed
to a person, the intents a verdict may name, and the reply-suggestion panel. No HTTP here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deskpilot.copilot.suggest import Suggestion
from deskpilot.domain import Role, Route
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.service.models import LoadedModel, ModelManager
from deskpilot.store.base import OTHER_INTENT
from deskpilot.store.knowledge import LatestSuggestion
from deskpilot.store.records import DecisionRecord

OTHER_LABEL = "None of these"
EXCERPT = 160


@dataclass(frozen=True)
class Why:
    """One reason a decision is in the queue: a short label (the queue's column) and a sentence."""

    label: str
    tone: str  # ok, warn or bad: the tag's colour
    detail: str


@dataclass(frozen=True)
class Serving:
    """The models serving now, as the ticket page needs them."""

    models: tuple[LoadedModel, ...]

    @classmethod
    def of(cls, manager: ModelManager) -> Serving:
        found = (manager.serving(role) for role in Role)
        return cls(tuple(loaded for loaded in found if loaded is not None))

    @property
    def intents(self) -> list[str]:
        """Every class a verdict may name (the service refuses any other), sorted."""
        return sorted({intent for loaded in self.models for intent in loaded.model.classes})

    def model(self, name: str, version: str) -> LoadedModel | None:
        return next((m for m in self.models if m.name == name and m.version == version), None)


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def short_reason(record: DecisionRecord) -> Why:
    """The queue column: the main reason, without the model's threshold (not read per row)."""
    if not record.intent:
        return Why("No answer", "bad", "No model could classify this message.")
    if record.fallback:
        return Why("Fallback", "warn", "The fallback model answered.")
    if record.route is Route.AUTO:
        return Why("Audit sample", "ok", "Routed automatically and sampled for review.")
    return Why("Low confidence", "warn", "Below the routing threshold.")


def why_routed(record: DecisionRecord, serving: Serving) -> list[Why]:
    """Every reason the decision came to a person, in plain words (the ticket page's "Why here")."""
    if not record.intent:
        cause = record.reason or "no reason was logged"
        return [Why("No model answered", "bad", f"No model could classify this message ({cause}).")]
    reasons: list[Why] = []
    conf = _pct(record.confidence)
    version = f"{record.model_name} version {record.model_version}"
    if record.fallback:
        cause = f" ({record.reason})" if record.reason else ""
        detail = f"The primary model did not answer{cause}; {version} answered instead."
        reasons.append(Why("Fallback model", "warn", detail))
    loaded = serving.model(record.model_name, record.model_version)
    threshold = None if loaded is None else loaded.model.manifest.threshold
    if record.route is Route.HUMAN:
        if loaded is not None and threshold is None:
            detail = f"{version} has no routing threshold, so every ticket goes to a person."
            reasons.append(Why("No threshold", "warn", detail))
        elif threshold is not None:
            detail = (
                f"Confidence {conf} is below the routing threshold of {_pct(threshold)} ({version}): the "
                "model is not sure enough to route it without a person."
            )
            reasons.append(Why("Below threshold", "warn", detail))
        else:
            detail = f"Confidence {conf} was below the routing threshold of {version} (no longer serving)."
            reasons.append(Why("Below threshold", "warn", detail))
    intents = serving.intents
    if intents and record.intent not in intents:
        detail = f"{record.intent!r} is not an intent of the models serving now: it needs a person's intent."
        reasons.append(Why("Unknown intent", "warn", detail))
    bar = f" (at or above the threshold of {_pct(threshold)})" if threshold is not None else ""
    if record.review_sample:
        detail = (
            f"Routed automatically with confidence {conf}{bar}, and sampled for review: your verdict "
            "measures how accurate automatic routing is."
        )
        reasons.append(Why("Audit sample", "ok", detail))
    elif record.route is Route.AUTO:
        detail = f"Routed automatically with confidence {conf}{bar}; it is not in the queue."
        reasons.append(Why("Automatic", "ok", detail))
    return reasons


def excerpt(text: str, limit: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def intent_label(intent: str | None) -> str:
    if intent == OTHER_INTENT:
        return OTHER_LABEL
    return intent or "–"


@dataclass(frozen=True)
class SourceView:
    number: int
    kind: str  # article or ticket
    id: str
    title: str
    text: str
    reply: str | None
    score: float | None


@dataclass(frozen=True)
class AssistView:
    """The reply-suggestion panel: the numbered sources and the draft citing them, or why there is none."""

    suggestion_id: str
    draft: str | None
    citations: tuple[int, ...]
    sources: tuple[SourceView, ...]
    reason: str
    provider: str
    needs_review: bool
    verdict: str | None = None
    stored: bool = False  # read back from the store rather than drafted for this view

    @property
    def articles(self) -> list[SourceView]:
        return [s for s in self.sources if s.kind == "article"]

    @property
    def tickets(self) -> list[SourceView]:
        return [s for s in self.sources if s.kind != "article"]


def _source(number: int, item: KnowledgeItem | None, id_: str, kind: str, score: float | None) -> SourceView:
    if item is None:
        return SourceView(number, kind, id_, id_, "", None, score)
    title = item.title or excerpt(item.text, 80)
    return SourceView(number, item.kind, item.id, title, excerpt(item.text, 400), item.reply, score)


def assist_from_suggestion(suggestion: Suggestion) -> AssistView:
    draft = suggestion.draft
    return AssistView(
        suggestion_id=suggestion.suggestion_id,
        draft=None if draft is None else draft.text,
        citations=() if draft is None else draft.citations,
        sources=tuple(
            _source(s.number, s.hit.item, s.hit.item.id, s.hit.item.kind, s.hit.score)
            for s in suggestion.sources
        ),
        reason=suggestion.reason,
        provider=suggestion.provider,
        needs_review=suggestion.triage.route != Route.AUTO.value,
    )


def assist_from_record(latest: LatestSuggestion, items: Mapping[str, KnowledgeItem]) -> AssistView:
    """A stored suggestion; its sources' texts come from the loaded index (``items`` by id) if it has them."""
    record = latest.record
    sources = []
    for n, source in enumerate(record.sources, start=1):
        id_ = str(source.get("id", ""))
        score = source.get("score")
        number = int(source.get("number", n))
        kind = str(source.get("kind", "article"))
        sources.append(
            _source(number, items.get(id_), id_, kind, float(score) if score is not None else None)
        )
    return AssistView(
        suggestion_id=record.suggestion_id,
        draft=record.draft,
        citations=record.citations,
        sources=tuple(sources),
        reason=record.reason,
        provider=record.provider,
        needs_review=record.route != Route.AUTO.value,
        verdict=latest.verdict,
        stored=True,
    )


def items_by_id(items: Iterable[KnowledgeItem]) -> dict[str, KnowledgeItem]:
    return {item.id: item for item in items}
