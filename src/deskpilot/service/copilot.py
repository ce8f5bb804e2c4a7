"""The copilot in the service: the loaded retrieval index, similar items, suggestions and their verdicts.

:class:`IndexHolder` serves the catalog's current index version and swaps in a newer one when a poll sees
it, the way the model watcher follows the registry: a version that fails to load is logged and counted, and
the one already loaded keeps serving. :class:`CopilotService` is what the routes call; it owns no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deskpilot.copilot.grounding import TriageView
from deskpilot.copilot.suggest import Copilot, SearchIndex, Suggestion
from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Ticket
from deskpilot.errors import (
    DecisionPendingError,
    KnowledgeIndexUnavailableError,
    NotFoundError,
    StoreError,
)
from deskpilot.retrieval.items import Hit
from deskpilot.service.batcher import MicroBatcher
from deskpilot.service.copilot_metrics import CopilotMetrics
from deskpilot.service.triage import FEEDBACK_FLUSH_WAIT_S, TriageService
from deskpilot.store.base import DecisionStore
from deskpilot.store.knowledge import (
    Acceptance,
    KnowledgeStore,
    SuggestionFeedbackRecord,
    SuggestionRecord,
    Verdict,
)
from deskpilot.store.records import DecisionRecord

logger = logging.getLogger(__name__)

ACCEPTANCE_TTL_S = 60.0


class IndexSource(Protocol):
    """The catalog, as far as the service reads it."""

    def current_version(self) -> int | None: ...

    def load(self, version: int | None = None) -> SearchIndex: ...


@dataclass(frozen=True)
class LoadedIndex:
    version: int
    index: SearchIndex


class IndexHolder:
    """The index version this process serves; :meth:`refresh` (polled by a
    :class:`deskpilot.service.models.Poller`) follows the catalog's ``CURRENT``."""

    def __init__(
        self,
        source: IndexSource,
        *,
        on_loaded: Callable[[int], None] | None = None,
        on_failed: Callable[[int, Exception], None] | None = None,
        on_unloaded: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self._on_loaded = on_loaded
        self._on_failed = on_failed
        self._on_unloaded = on_unloaded
        self._loaded: LoadedIndex | None = None
        self._failed: int | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> LoadedIndex | None:
        return self._loaded

    def refresh(self) -> None:
        """Load the current version if it is new (and did not already fail to load)."""
        with self._lock:
            try:
                version = self.source.current_version()
            except Exception as exc:  # an unreadable CURRENT must not stop the server (or its triage)
                logger.error("cannot read the retrieval index pointer: %s", exc)
                return
            if version is None and self._loaded is not None:
                # the catalog was cleared (its last items were erased): serve nothing rather than them
                logger.warning(
                    "the retrieval index catalog is empty: version %s unloaded", self._loaded.version
                )
                self._loaded = None
                if self._on_unloaded is not None:
                    self._on_unloaded()
                return
            if version is None or version == self._failed:
                return
            if self._loaded is not None and self._loaded.version == version:
                return
            try:
                index = self.source.load(version)
            except Exception as exc:  # corrupt, unreadable or incompatible: the loaded version keeps serving
                self._failed = version
                logger.error("retrieval index version %s failed to load: %s", version, exc)
                if self._on_failed is not None:
                    self._on_failed(version, exc)
                return
            self._loaded = LoadedIndex(version, index)
            self._failed = None
            logger.info("serving retrieval index version %s", version)
            if self._on_loaded is not None:
                self._on_loaded(version)


@dataclass(frozen=True)
class EncoderLimits:
    """The query encoder's micro-batching and admission (the triage model's settings by default)."""

    max_batch: int = 64
    max_wait_ms: float = 2.0
    timeout_s: float | None = 2.0
    max_queued_chars: int | None = 2_000_000


@dataclass(frozen=True)
class SimilarResult:
    index_version: int
    hits: list[Hit]


@dataclass(frozen=True)
class SuggestOutcome:
    suggestion: Suggestion
    index_version: int
    model_version: str
    alternatives: tuple[tuple[str, float], ...]


class CopilotService:
    def __init__(
        self,
        *,
        triage: TriageService,
        copilot: Copilot,
        holder: IndexHolder,
        knowledge: KnowledgeStore,
        decisions: DecisionStore,
        redactor: PiiRedactor,
        metrics: CopilotMetrics,
        limits: EncoderLimits | None = None,
    ) -> None:
        self.triage = triage
        self.copilot = copilot
        self.holder = holder
        self.knowledge = knowledge
        self.decisions = decisions
        self.redactor = redactor
        self.metrics = metrics
        self._acceptance: dict[str, tuple[float, Mapping[tuple[str, str], Acceptance]]] = {}
        self.limits = limits or EncoderLimits()
        self._batcher: MicroBatcher[LoadedIndex] | None = None

    async def start(self) -> None:
        """Start the query encoder's micro-batcher on the running loop: concurrent searches share one
        encoder call, as concurrent triage requests share one model call."""
        self._batcher = MicroBatcher(
            self._encode_batch,
            max_batch=self.limits.max_batch,
            max_wait_ms=self.limits.max_wait_ms,
            name="query-encoder",
        )

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()

    def _encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, LoadedIndex]:
        loaded = self._index()  # the batch is encoded by, and searched in, the version loaded now
        return loaded.index.encode(texts), loaded

    async def _encode(self, tenant: str, text: str) -> tuple[np.ndarray, LoadedIndex]:
        if self._batcher is None:
            loaded = self._index()
            vector = await asyncio.to_thread(loaded.index.encode, [text])
            return vector[0], loaded
        vectors, loaded = await self._batcher.predict(
            [text],
            tenant=tenant,
            timeout_s=self.limits.timeout_s,
            max_queued_chars=self.limits.max_queued_chars,
        )
        return vectors[0], loaded

    def warm(self) -> None:
        """Embed the loaded index's article sentences, so the first suggestions do not pay for it."""
        loaded = self.holder.loaded
        if loaded is not None:
            started = time.perf_counter()
            n = self.copilot.warm(loaded.index)
            logger.info("embedded %d article sentences in %.1f s", n, time.perf_counter() - started)

    def _index(self) -> LoadedIndex:
        loaded = self.holder.loaded
        if loaded is None:
            raise KnowledgeIndexUnavailableError(
                "no retrieval index is loaded: import knowledge with `deskpilot kb import`, which builds one"
            )
        return loaded

    async def similar(self, tenant: str, text: str, k: int) -> SimilarResult:
        self._index()  # 503 before any work when nothing is loaded
        started = time.perf_counter()
        redacted = self.redactor.redact(text)
        vector, loaded = await self._encode(tenant, redacted)
        hits = await asyncio.to_thread(loaded.index.search_encoded, tenant, redacted, vector, k)
        self.metrics.similar_latency.observe(time.perf_counter() - started)
        return SimilarResult(loaded.version, hits)

    async def suggest(
        self,
        tenant: str,
        *,
        text: str | None = None,
        request_id: str | None = None,
        http_request_id: str | None = None,
    ) -> SuggestOutcome:
        """From a new ``text`` (triaged and logged here first) or a decision already made (``request_id``)."""
        self._index()  # 503 before any work (triage included) when nothing is loaded
        if request_id is not None:
            view, redacted, model_version, alternatives = await self._decided(tenant, request_id)
        elif text is not None:
            (answer,) = await self.triage.triage(tenant, [Ticket(text=text)], http_request_id=http_request_id)
            decision = answer.decision
            prediction = decision.prediction
            alternatives = tuple((a.intent, a.confidence) for a in prediction.alternatives)
            view = TriageView(
                intent=prediction.intent,
                confidence=prediction.confidence,
                route=str(decision.route),
                request_id=decision.request_id,
                alternatives=tuple(intent for intent, _ in alternatives),
            )
            redacted, model_version = self.redactor.redact(text), decision.model_version
        else:
            raise ValueError("suggest needs a text or a request_id")
        started = time.perf_counter()
        query, loaded = await self._encode(tenant, redacted)
        suggestion = await self.copilot.suggest(
            tenant=tenant,
            text=redacted,
            triage=view,
            index=loaded.index,
            acceptance=await self._acceptance_of(tenant),
            query=query,
        )
        latency_s = time.perf_counter() - started
        self._observe(suggestion, latency_s)
        await self._record(tenant, suggestion, loaded.version, latency_s * 1000.0)
        return SuggestOutcome(suggestion, loaded.version, model_version, alternatives)

    async def feedback(
        self,
        tenant: str,
        suggestion_id: str,
        verdict: Verdict,
        *,
        edit_distance: int | None = None,
        final_text: str | None = None,
    ) -> SuggestionFeedbackRecord:
        """An agent's verdict. For ``edited``, the distance is given or computed from the text sent (which is
        redacted first and never stored)."""
        if verdict == "edited" and edit_distance is None and final_text is not None:
            found = await asyncio.to_thread(self.knowledge.get_suggestion, tenant, suggestion_id)
            if found is None:
                raise NotFoundError(f"no suggestion with suggestion_id {suggestion_id!r}")
            edit_distance = await asyncio.to_thread(
                levenshtein, found.draft or "", self.redactor.redact(final_text)
            )
        if verdict != "edited":
            edit_distance = None
        record = await asyncio.to_thread(
            self.knowledge.add_suggestion_feedback, tenant, suggestion_id, verdict, edit_distance
        )
        if record.previous != verdict:  # posting the same verdict again replaces it, it is not a new one
            self.metrics.feedback.labels(verdict).inc()
        self._acceptance.pop(tenant, None)
        return record

    async def _decided(
        self, tenant: str, request_id: str
    ) -> tuple[TriageView, str, str, tuple[tuple[str, float], ...]]:
        record = await asyncio.to_thread(self.decisions.get_decision, tenant, request_id)
        if record is None:
            record = await self._after_flush(tenant, request_id)
        if record is None:  # another tenant's decision looks exactly like a missing one
            raise NotFoundError(f"no decision with request_id {request_id!r}")
        view = TriageView(
            intent=record.intent,
            confidence=record.confidence,
            route=str(record.route),
            request_id=record.request_id,
            alternatives=tuple(intent for intent, _ in record.alternatives),
        )
        return view, record.text, record.model_version, record.alternatives

    async def _after_flush(self, tenant: str, request_id: str) -> DecisionRecord | None:
        """The decision, looked up again once the write buffer has flushed: an agent's tool that asks for a
        suggestion right after POST /v1/triage must not get a 404 for a decision still in the buffer (the
        same wait as :meth:`TriageService.feedback`)."""
        writer = self.triage.writer
        if writer is None:
            return None
        flushed = True
        if writer.depth:
            flushed = await asyncio.to_thread(writer.flush, FEEDBACK_FLUSH_WAIT_S)
        else:
            await asyncio.sleep(2 * writer.flush_interval_s)
        record = await asyncio.to_thread(self.decisions.get_decision, tenant, request_id)
        if record is None and not (flushed and writer.healthy):
            raise DecisionPendingError(
                "the decision log is behind (its database refuses writes now); retry this suggestion later",
                details={"retry_after_s": max(1, round(FEEDBACK_FLUSH_WAIT_S))},
            )
        return record

    async def _acceptance_of(self, tenant: str) -> Mapping[tuple[str, str], Acceptance]:
        now = time.monotonic()
        cached = self._acceptance.get(tenant)
        if cached is not None and now - cached[0] < ACCEPTANCE_TTL_S:
            return cached[1]
        try:
            found = await asyncio.to_thread(self.knowledge.acceptance, tenant)
        except StoreError as exc:
            logger.warning("cannot read the drafts' verdicts, so the LLM policy sees none: %s", exc)
            found = {}
        self._acceptance[tenant] = (now, found)
        return found

    def _observe(self, suggestion: Suggestion, latency_s: float) -> None:
        m = self.metrics
        m.suggest_latency.labels(suggestion.provider).observe(latency_s)
        m.suggestions.labels(suggestion.provider, "draft" if suggestion.draft else "no_draft").inc()
        for flag in suggestion.flags:
            m.guard_flags.labels(flag).inc()

    async def _record(self, tenant: str, suggestion: Suggestion, version: int, latency_ms: float) -> None:
        draft = suggestion.draft
        record = SuggestionRecord(
            tenant=tenant,
            suggestion_id=suggestion.suggestion_id,
            request_id=suggestion.triage.request_id,
            intent=suggestion.triage.intent,
            route=suggestion.triage.route,
            draft=None if draft is None else draft.text,
            citations=() if draft is None else draft.citations,
            sources=tuple(
                {
                    "number": s.number,
                    "id": s.hit.item.id,
                    "kind": s.hit.item.kind,
                    "score": round(s.hit.score, 6),
                }
                for s in suggestion.sources
            ),
            reason=suggestion.reason,
            provider=suggestion.provider,
            model=suggestion.model,
            prompt_version=suggestion.prompt_version,
            index_version=version,
            flags=suggestion.flags,
            prompt_tokens=suggestion.prompt_tokens,
            completion_tokens=suggestion.completion_tokens,
            cost_usd=suggestion.cost_usd,
            latency_ms=latency_ms,
        )
        try:
            await asyncio.to_thread(self.knowledge.write_suggestion, record)
        except StoreError as exc:
            self.metrics.record_failures.inc()
            logger.warning("suggestion %s was not recorded: %s", suggestion.suggestion_id, exc)


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insertions, deletions, substitutions).

    Hyyro's bit-vector form of Myers' algorithm: one pass over ``a`` with the columns of the dynamic program
    packed into integers of ``len(b)`` bits, so two 2,000-character replies take milliseconds, not the
    seconds of the quadratic table (an agent's edited reply is measured on the request path).
    """
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    positions: dict[str, int] = {}
    for i, char in enumerate(b):
        positions[char] = positions.get(char, 0) | (1 << i)
    plus, minus, score = full, 0, m
    for char in a:
        eq = positions.get(char, 0)
        xv = eq | minus
        xh = (((eq & plus) + plus) ^ plus) | eq
        ph = minus | (~(xh | plus) & full)
        mh = plus & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        plus = mh | (~(xv | ph) & full)
        minus = ph & xv
    return score
