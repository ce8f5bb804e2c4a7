"""A reply suggestion: sources for the agent, and a draft grounded only in them, or an honest "no".

The flow: retrieve the tenant's similar items (the ticket is already redacted), number the first few as
sources, keep those that can answer, then draft. The policy decides whether an LLM may draft; the gateway
walks its providers; whatever comes back, and the extractive draft that ends every fallback chain, passes the
same guard. Triage is an input here, never an output: a failing LLM changes the draft, not the routing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from deskpilot.copilot.embedding_cache import SentenceVectors
from deskpilot.copilot.gateway.base import ChatRequest, Completion
from deskpilot.copilot.gateway.router import GatewayExhausted
from deskpilot.copilot.grounding import (
    GroundingConfig,
    NumberedSource,
    TriageView,
    answering,
    extractive_draft,
    intents_answered,
    number_sources,
)
from deskpilot.copilot.guardrails import CheckedSentence, DraftGuard, GuardConfig, GuardedDraft
from deskpilot.copilot.policy import EXTRACTIVE, PolicyConfig, PolicyDecision, decide
from deskpilot.copilot.prompts import NumberedSource as PromptSource
from deskpilot.copilot.prompts import ReplyTemplate
from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.items import Hit, Kind, KnowledgeItem
from deskpilot.retrieval.passages import split_sentences
from deskpilot.store.knowledge import Acceptance

logger = logging.getLogger(__name__)

NO_GROUNDED_ANSWER = "no grounded answer: route to a person"
WARM_SENTENCES = 10_000
ARTICLES: tuple[Kind, ...] = ("article",)
TICKETS: tuple[Kind, ...] = ("ticket",)


class SearchIndex(Protocol):
    """What the copilot needs of a loaded retrieval index."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def tenants(self) -> tuple[str, ...]: ...

    def items(self, tenant: str) -> tuple[KnowledgeItem, ...]: ...

    def item(self, tenant: str, item_id: str) -> KnowledgeItem | None: ...

    def search_encoded(
        self,
        tenant: str,
        text: str,
        vector: np.ndarray | None,
        k: int = 10,
        *,
        kinds: Collection[Kind] | None = None,
    ) -> list[Hit]: ...


class ChatGateway(Protocol):
    async def complete(self, request: ChatRequest) -> Completion: ...


@dataclass(frozen=True)
class Draft:
    text: str
    citations: tuple[int, ...]
    provider: str
    needs_review: bool  # the ticket is routed to a person: the draft is a starting point, not an answer
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str
    triage: TriageView
    sources: tuple[NumberedSource, ...]
    draft: Draft | None
    reason: str
    provider: str
    prompt_version: str
    model: str | None = None
    flags: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    answering: tuple[int, ...] = ()  # numbers of the sources allowed to ground the draft
    attempts: tuple[str, ...] = field(default=())  # "provider: kind" of each failed LLM attempt
    checked: tuple[CheckedSentence, ...] = field(default=(), repr=False)  # the guard's verdict per sentence


class Copilot:
    """Drafts for one process; every dependency is passed in (the service builds it from settings)."""

    def __init__(
        self,
        *,
        template: ReplyTemplate,
        redactor: PiiRedactor,
        gateway: ChatGateway | None = None,
        grounding: GroundingConfig | None = None,
        guard: GuardConfig | None = None,
        policy: PolicyConfig | None = None,
        max_tokens: int = 400,
    ) -> None:
        self.template = template
        self.redactor = redactor
        self.gateway = gateway
        self.grounding = grounding or GroundingConfig()
        self.guard_config = guard or GuardConfig()
        self.policy = policy or PolicyConfig()
        self.max_tokens = max_tokens
        # one cache per loaded index (its encoder), dropped with the index: requests still holding the
        # previous version during a reload neither use nor evict the new version's warmed cache
        self._vectors: weakref.WeakKeyDictionary[SearchIndex, SentenceVectors] = weakref.WeakKeyDictionary()
        self._vectors_lock = threading.Lock()

    def vectors(self, index: SearchIndex) -> SentenceVectors:
        """Sentence vectors through ``index``'s encoder, cached per index."""
        with self._vectors_lock:
            found = self._vectors.get(index)
            if found is None:
                found = self._vectors[index] = SentenceVectors(index.encode)
            return found

    def warm(self, index: SearchIndex, limit: int = WARM_SENTENCES) -> int:
        """Embed the articles' sentences ahead of the first requests (at most ``limit``); returns how many."""
        sentences: list[str] = []
        for tenant in index.tenants():
            for item in index.items(tenant):
                if item.kind == "article":
                    sentences += split_sentences(item.text)
                if len(sentences) >= limit:
                    break
        sentences = list(dict.fromkeys(sentences))[:limit]
        vectors = self.vectors(index)
        for start in range(0, len(sentences), 256):
            vectors(sentences[start : start + 256])
        return len(sentences)

    async def suggest(
        self,
        *,
        tenant: str,
        text: str,
        triage: TriageView,
        index: SearchIndex,
        acceptance: Mapping[tuple[str, str], Acceptance],
        query: np.ndarray | None = None,
    ) -> Suggestion:
        """``text`` must already be redacted; ``query`` is its embedding when the caller has it (the
        service batches the encoder over concurrent requests)."""
        vectors = self.vectors(index)
        encoded, hits = await asyncio.to_thread(self._retrieve, index, tenant, text, triage, query)
        sources = number_sources(hits)
        candidates = answering(sources, triage, self.grounding)
        suggestion_id = uuid.uuid4().hex
        base = Suggestion(
            suggestion_id=suggestion_id,
            triage=triage,
            sources=tuple(sources),
            draft=None,
            reason=NO_GROUNDED_ANSWER,
            provider=EXTRACTIVE,
            prompt_version=self.template.version,
            answering=tuple(source.number for source in candidates),
        )
        if not candidates:
            return base
        guard = DraftGuard(self.template, self.redactor, vectors.support, self.guard_config)
        pools = {source.number: source.sentences() for source in candidates}
        policy = decide(
            llm_configured=self.gateway is not None,
            intent=triage.intent,
            route=triage.route,
            acceptance=acceptance,
            config=self.policy,
        )
        attempts: list[str] = []
        rejected: tuple[str, ...] = ()  # what the guard found in an LLM answer it rejected whole
        if policy.use_llm and self.gateway is not None:
            outcome = await self._llm(tenant, text, triage, candidates, guard, pools, attempts)
            if outcome is not None and outcome.usable:
                return outcome.complete(base, triage)
            if outcome is not None:  # the guard rejected the whole answer: extractive, but the call was paid
                c = outcome.completion
                base = replace(
                    base,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    cost_usd=c.cost_usd,
                )
                rejected = tuple(f"llm_{flag}" for flag in outcome.guarded.flags)
        draft = await asyncio.to_thread(
            extractive_draft, self.template, triage, encoded, candidates, vectors, self.grounding
        )
        if draft is None:
            return replace(base, attempts=tuple(attempts), flags=(*rejected, "no_close_sentence"))
        guarded = await asyncio.to_thread(guard.check, draft, pools, self.template.frame(triage.intent))
        done = _finish(base, triage, guarded, EXTRACTIVE, policy, attempts)
        return replace(done, flags=(*rejected, *done.flags)) if rejected else done

    def _retrieve(
        self, index: SearchIndex, tenant: str, text: str, triage: TriageView, query: np.ndarray | None
    ) -> tuple[np.ndarray, list[Hit]]:
        """Articles first (they ground most drafts), then similar tickets: two searches in one partition,
        so a tenant with thousands of tickets still gets its few articles. Among the closest
        ``article_pool`` articles, those written for the triaged intent come first: the classifier knows
        the intent better than a nearest-neighbour search over a handful of articles."""
        if query is None:
            query = index.encode([text])[0]
        config = self.grounding
        pool = index.search_encoded(
            tenant, text, query, max(config.article_pool, config.articles), kinds=ARTICLES
        )
        wanted = intents_answered(triage, config)
        ranked = sorted(pool, key=lambda hit: not wanted.intersection(hit.item.intents))  # stable
        tickets = index.search_encoded(tenant, text, query, config.tickets, kinds=TICKETS)
        return query, ranked[: config.articles] + tickets

    async def _llm(
        self,
        tenant: str,
        text: str,
        triage: TriageView,
        candidates: Sequence[NumberedSource],
        guard: DraftGuard,
        pools: dict[int, list[str]],
        attempts: list[str],
    ) -> _LlmOutcome | None:
        assert self.gateway is not None
        shown = [PromptSource(s.number, s.hit.item.title, s.answer_text or "") for s in candidates]
        messages = self.template.messages(
            ticket=text, intent=triage.intent, sources=shown, max_sentences=self.guard_config.max_sentences
        )
        scope = "|".join(
            [self.template.version, *(f"{s.hit.item.id}:{_digest(s.answer_text or '')}" for s in candidates)]
        )
        request = ChatRequest(messages=messages, tenant=tenant, max_tokens=self.max_tokens, cache_scope=scope)
        try:
            completion = await self.gateway.complete(request)
        except GatewayExhausted as exc:
            attempts.extend(f"{a.provider}: {a.kind.value}" for a in exc.attempts)
            logger.info("LLM draft fell back to extractive: %s", "; ".join(attempts))
            return None
        except Exception:  # a gateway bug must cost the draft its LLM, never the suggestion
            attempts.append("gateway: internal_error")
            logger.exception("the model gateway failed unexpectedly; drafting without an LLM")
            return None
        guarded = await asyncio.to_thread(guard.check, completion.text, pools)
        if guarded.text is None and "no_answer" not in guarded.flags:
            attempts.append(f"{completion.provider}: every sentence failed the guard")
        return _LlmOutcome(completion, guarded, attempts)


@dataclass
class _LlmOutcome:
    completion: Completion
    guarded: GuardedDraft
    attempts: list[str]

    @property
    def usable(self) -> bool:
        """A draft survived the guard, or the LLM said the sources do not answer (an honest "no")."""
        return self.guarded.text is not None or "no_answer" in self.guarded.flags

    def complete(self, base: Suggestion, triage: TriageView) -> Suggestion:
        c = self.completion
        decision = PolicyDecision(True, "")
        done = _finish(base, triage, self.guarded, c.provider, decision, self.attempts)
        spent = 0 if c.cached else 1  # a cached answer keeps the first call's usage, but costs nothing now
        return replace(
            done,
            model=c.model,
            prompt_tokens=c.prompt_tokens * spent,
            completion_tokens=c.completion_tokens * spent,
            cost_usd=c.cost_usd * spent,
            flags=(*done.flags, "cached") if c.cached else done.flags,
        )


def _finish(
    base: Suggestion,
    triage: TriageView,
    guarded: GuardedDraft,
    provider: str,
    policy: PolicyDecision,
    attempts: list[str],
) -> Suggestion:
    if guarded.text is None:
        return replace(
            base, provider=provider, flags=guarded.flags, attempts=tuple(attempts), checked=guarded.sentences
        )
    needs_review = triage.route != "auto"
    draft = Draft(guarded.text, guarded.citations, provider, needs_review, guarded.flags)
    reason = "grounded draft from the cited sources"
    if needs_review:
        reason += "; the ticket is routed to a person, so review the draft before sending"
    if provider == EXTRACTIVE and policy.reason and not policy.use_llm:
        reason += f" (no LLM: {policy.reason})"
    return replace(
        base,
        draft=draft,
        reason=reason,
        provider=provider,
        flags=guarded.flags,
        attempts=tuple(attempts),
        checked=guarded.sentences,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
