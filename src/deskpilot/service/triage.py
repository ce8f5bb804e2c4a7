"""TriageService: redact, batch, predict with fallback, decide the route, log the decision.

No web framework here: the API calls these methods and maps their values and errors to HTTP. The primary
model answers within ``model_timeout_s`` or the fallback answers instead (flagged, counted); when neither
can, the ticket goes to a person with the reason. Decisions are logged through a bounded background writer,
so a store outage never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Prediction, Route, Ticket, TriageDecision
from deskpilot.models.artifact import predictions_from_proba
from deskpilot.service.batcher import MicroBatcher
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import LoadedModel, ModelManager
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import DecisionRecord, FeedbackRecord
from deskpilot.store.writer import BufferedWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 2.0
    model_timeout_s: float = 2.0
    top_k: int = 3


@dataclass(frozen=True)
class Answer:
    """One decision plus what the response and the log need beyond the domain value."""

    decision: TriageDecision
    model_name: str
    latency_ms: float


class TriageService:
    def __init__(
        self,
        models: ModelManager,
        *,
        store: DecisionStore | None,
        writer: BufferedWriter | None,
        metrics: ServiceMetrics,
        redactor: PiiRedactor | None = None,
        limits: ServiceLimits | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.redactor = redactor or PiiRedactor()
        self.limits = limits or ServiceLimits()
        self.tracer = tracer or trace.NoOpTracer()
        self._primary: MicroBatcher[LoadedModel] | None = None
        self._fallback: MicroBatcher[LoadedModel] | None = None

    async def start(self) -> None:
        """Create the batchers on the running loop (they own a task and a model thread each)."""
        self._primary = self._batcher("primary", lambda: self.models.primary)
        self._fallback = self._batcher("fallback", lambda: self.models.fallback)

    def _batcher(self, role: str, current: Callable[[], LoadedModel | None]) -> MicroBatcher[LoadedModel]:
        """A batcher that asks for the model serving ``role`` at each batch, so a swap needs no restart."""
        return MicroBatcher(
            lambda texts: self._run(current(), texts),
            max_batch=self.limits.max_batch,
            max_wait_ms=self.limits.max_wait_ms,
            name=role,
            on_batch=lambda size, seconds: self.metrics.observe_batch(role, size, seconds),
            tracer=self.tracer,
        )

    async def close(self) -> None:
        for batcher in (self._primary, self._fallback):
            if batcher is not None:
                await batcher.close()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close, 10.0)
        if self.store is not None:
            self.store.close()

    @staticmethod
    def _run(loaded: LoadedModel | None, texts: Sequence[str]) -> tuple[np.ndarray, LoadedModel]:
        if loaded is None:
            raise LookupError("no model is loaded")
        probs = loaded.predict_proba(list(texts))
        expected = (len(texts), len(loaded.model.classes))
        # garbage out of a model is its failure (answered by the fallback), not a 500 further down
        if probs.shape != expected or not np.isfinite(probs).all():
            raise ValueError(f"{loaded.uri} returned {probs.shape} probabilities, not {expected} finite ones")
        return probs, loaded

    def ready(self) -> tuple[bool, list[str]]:
        """Ready when a model can answer and the store (if any) is reachable."""
        problems = []
        if self.models.primary is None:
            problems.append(f"no primary model: {self.models.last_error or 'not loaded yet'}")
        if self.store is not None:
            try:
                self.store.ping()
            except Exception as exc:  # any store failure means not ready, with the reason
                problems.append(f"store unreachable: {exc}")
        return not problems, problems

    async def triage(self, tenant: str, tickets: Sequence[Ticket]) -> list[Answer]:
        """Decide every ticket (texts already validated); one model call for the whole request."""
        started = time.perf_counter()
        with self.tracer.start_as_current_span("triage") as span:
            span.set_attribute("deskpilot.tenant", tenant)
            span.set_attribute("deskpilot.tickets", len(tickets))
            texts = [self.redactor.redact(t.text) for t in tickets]
            probs, loaded, fallback, reason = await self._predict(texts)
            span.set_attribute("deskpilot.fallback", fallback)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        answers = []
        if probs is None or loaded is None:
            for _ in tickets:
                decision = TriageDecision(
                    request_id=_new_request_id(),
                    prediction=Prediction("", 0.0),
                    route=Route.HUMAN,
                    model_version="none",
                    reason=reason,
                    fallback=True,
                )
                answers.append(Answer(decision, self.models.name, elapsed_ms))
        else:
            predictions = predictions_from_proba(probs, loaded.model.classes, top_k=self.limits.top_k)
            for prediction in predictions:
                decision = TriageDecision(
                    request_id=_new_request_id(),
                    prediction=prediction,
                    route=loaded.model.route_for(prediction.confidence),
                    model_version=loaded.version,
                    reason=reason,
                    fallback=fallback,
                )
                answers.append(Answer(decision, loaded.name, elapsed_ms))
        for ticket, text, answer in zip(tickets, texts, answers, strict=True):
            self._record(tenant, ticket, text, answer)
        return answers

    async def _predict(self, texts: list[str]) -> tuple[np.ndarray | None, LoadedModel | None, bool, str]:
        if self._primary is None or self._fallback is None:
            raise RuntimeError("TriageService.start() was not awaited")
        timeout = self.limits.model_timeout_s
        try:
            probs, loaded = await asyncio.wait_for(self._primary.predict(texts), timeout)
            return probs, loaded, False, ""
        except TimeoutError:
            reason = f"primary model exceeded its {timeout:g}s budget"
            self.metrics.fallbacks.labels("timeout").inc()
        except Exception as exc:  # the primary's failure is answered by the fallback, not by a 500
            reason = f"primary model failed: {type(exc).__name__}: {exc}"
            self.metrics.fallbacks.labels("error").inc()
        logger.warning("answering with the fallback model: %s", reason)
        try:
            probs, loaded = await asyncio.wait_for(self._fallback.predict(texts), timeout)
            return probs, loaded, True, reason
        except Exception as exc:  # both failed: a person decides
            self.metrics.fallbacks.labels("unavailable").inc()
            detail = "exceeded its budget" if isinstance(exc, TimeoutError) else f"failed: {exc}"
            return None, None, True, f"{reason}; fallback model {detail}; routed to a person"

    def _record(self, tenant: str, ticket: Ticket, text: str, answer: Answer) -> None:
        decision = answer.decision
        prediction = decision.prediction
        if prediction.intent:
            self.metrics.predictions.labels(prediction.intent, str(decision.route)).inc()
            self.metrics.confidence.observe(prediction.confidence)
        if self.writer is None:
            return
        record = DecisionRecord(
            tenant=tenant,
            request_id=decision.request_id,
            ticket_id=ticket.id,
            model_name=answer.model_name,
            model_version=decision.model_version,
            intent=prediction.intent,
            confidence=prediction.confidence,
            route=decision.route,
            alternatives=tuple((a.intent, a.confidence) for a in prediction.alternatives),
            latency_ms=answer.latency_ms,
            text=text,
            fallback=decision.fallback,
            reason=decision.reason,
        )
        self.writer.submit(record)
        self.metrics.store_queue_depth.set(self.writer.depth)

    async def feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        """Store an agent's verdict on a decision of this tenant (StoreNotFoundError otherwise)."""
        if self.store is None:
            raise LookupError("no store is configured")
        return await asyncio.to_thread(self.store.add_feedback, tenant, request_id, correct_intent)

    def serving(self) -> dict[str, object]:
        """What serves, at what share (the rollout issue adds shadow and canary shares)."""
        out: dict[str, object] = {}
        for role, loaded in (("primary", self.models.primary), ("fallback", self.models.fallback)):
            out[role] = None if loaded is None else _describe(loaded)
        if self.models.primary is not None:
            out["shares"] = {self.models.primary.uri: 1.0}
        return out


def _describe(loaded: LoadedModel) -> dict[str, object]:
    manifest = loaded.model.manifest
    return {
        "uri": loaded.uri,
        "name": loaded.name,
        "version": loaded.version,
        "family": loaded.family,
        "threshold": manifest.threshold,
        "target_precision": manifest.routing.get("target_precision"),
        "classes": len(manifest.classes),
    }


def _new_request_id() -> str:
    return uuid.uuid4().hex
