"""TriageService: redact, batch, predict with fallback, decide the route, log the decision.

No web framework here: the API calls these methods and maps their values and errors to HTTP. The champion
(in a canary, the challenger for its share) answers within ``model_timeout_s`` or the next in line answers
instead (flagged, counted); when none can, the ticket goes to a person with the reason. Decisions, and a
shadow challenger's answers, are logged through bounded background writers, so a store outage never fails a
request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from opentelemetry import trace

from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Prediction, Role, Route, Ticket, TriageDecision
from deskpilot.errors import DecisionPendingError, OverloadedError, StoreNotFoundError, UnknownIntentError
from deskpilot.rollout.monitor import WATCHED, RolloutMonitor
from deskpilot.rollout.shadow import ShadowScorer
from deskpilot.rollout.split import to_challenger
from deskpilot.rollout.state import Stage
from deskpilot.service.batcher import SHED_QUEUE_FULL, MicroBatcher
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import LoadedModel, ModelManager
from deskpilot.service.observability import span as span_of
from deskpilot.store.base import OTHER_INTENT, DecisionStore
from deskpilot.store.records import DecisionRecord, FeedbackRecord, ShadowRecord
from deskpilot.store.writer import BufferedWriter, ShadowWriter

logger = logging.getLogger(__name__)
# The longest a verdict on a decision not found yet waits for this worker's write buffer to flush.
FEEDBACK_FLUSH_WAIT_S = 1.0


@dataclass(frozen=True)
class ServiceLimits:
    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 2.0
    model_timeout_s: float = 2.0
    top_k: int = 3
    # characters that may wait for one model (None: unbounded); past it, requests are shed with 503
    max_queued_chars: int | None = None
    # share of auto routes also marked for a person's review: the monitor's unbiased audit sample
    review_sample_rate: float = 0.0


@dataclass(frozen=True)
class _Outcome:
    probs: np.ndarray | None
    loaded: LoadedModel | None
    fallback: bool
    reason: str


@dataclass(frozen=True)
class Answer:
    """One decision plus what the response and the log need beyond the domain value."""

    decision: TriageDecision
    model_name: str
    latency_ms: float
    # the caller's ticket id as stored and echoed: redacted like the text, since a support system may key
    # tickets by e-mail or phone (the canary split hashes the raw id in memory, so stickiness is unchanged)
    ticket_id: str | None = None


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
        monitor: RolloutMonitor | None = None,
        shadow_writer: ShadowWriter | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.writer = writer
        self.shadow_writer = shadow_writer
        self.metrics = metrics
        self.redactor = redactor or PiiRedactor()
        self.limits = limits or ServiceLimits()
        self.tracer = tracer or trace.NoOpTracer()
        self.monitor = monitor or RolloutMonitor(window_s=60.0)
        self.shadow: ShadowScorer | None = None
        self._batchers: dict[Role, MicroBatcher[LoadedModel]] = {}

    async def start(self) -> None:
        """Create the batchers on the running loop (they own a task and a model thread each)."""
        self._batchers = {role: self._batcher(role) for role in Role}
        self.shadow = ShadowScorer(
            self._batchers[Role.CHALLENGER].predict,
            self.monitor,
            timeout_s=self.limits.model_timeout_s,
            on_answers=self._record_shadow if self.shadow_writer is not None else None,
            on_shed=self.metrics.shadow_shed.inc,
        )

    def _batcher(self, role: Role) -> MicroBatcher[LoadedModel]:
        """A batcher that asks for the model serving ``role`` at each batch, so a swap needs no restart."""
        return MicroBatcher(
            lambda texts: self._run(self.models.serving(role), texts),
            max_batch=self.limits.max_batch,
            max_wait_ms=self.limits.max_wait_ms,
            name=role,
            on_batch=lambda size, seconds: self.metrics.observe_batch(role, size, seconds),
            tracer=self.tracer,
        )

    async def close(self) -> None:
        if self.shadow is not None:
            await self.shadow.close()
        for batcher in self._batchers.values():
            await batcher.close()
        for writer in (self.writer, self.shadow_writer):
            if writer is not None:
                await asyncio.to_thread(writer.close, 10.0)
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
        """Ready when a model can answer, the store (if any) is reachable and is still the database file it
        opened, and decisions get written (the decision writer's last write went through, or its retry does
        within a second, and its buffer is not full).

        The problems name no database URL or file, since a status page may show them; the same problems
        with those details are logged, once each time they change.
        """
        from deskpilot.errors import DeskPilotError
        from deskpilot.store.engine import without_location

        problems: list[str] = []
        details: list[str] = []

        def problem(public: str, detail: str | None = None) -> None:
            problems.append(public)
            details.append(detail or public)

        if self.models.champion is None:
            problem(f"no champion model: {self.models.last_error or 'not loaded yet'}")
        if self.store is not None:
            try:
                self.store.ping()
            except Exception as exc:  # any store failure means not ready, with the reason
                public = without_location(exc.message, exc.details) if isinstance(exc, DeskPilotError) else ""
                problem(f"store unreachable: {public or type(exc).__name__}", f"store unreachable: {exc}")
            else:
                for public, detail in self.store.storage_problems():
                    problem(public, detail)
                writer = self.writer
                if writer is not None and writer.depth and not writer.writing(timeout=1.0):
                    problem(f"decisions are not being written: {writer.depth} wait in the buffer")
        if self.writer is not None and self.writer.depth >= self.writer.capacity:
            problem(f"the decision buffer is full ({self.writer.capacity}): new decisions are dropped")
        if details != getattr(self, "_ready_details", []):
            self._ready_details = details
            if details:
                logger.warning("not ready: %s", "; ".join(details))
            else:
                logger.info("ready again")
        return not problems, problems

    async def triage(
        self, tenant: str, tickets: Sequence[Ticket], *, http_request_id: str | None = None
    ) -> list[Answer]:
        """Decide every ticket (texts already validated): one model call per model for the whole request.

        In a canary, the tickets whose (tenant, ticket id) hash falls in the challenger's share go to the
        challenger; in shadow, the challenger scores the same texts after the answers are ready. Each
        decision gets its own id and is logged with ``http_request_id``, the id of the HTTP request (or
        batch job) that asked, so a log line leads to its decisions and a decision back to its log line.

        :class:`OverloadedError` when the model queue cannot take the texts (checked before any work is
        spent on them, see :mod:`deskpilot.service.batcher`) or they waited past the time budget.
        """
        self._check_admission(tenant, sum(len(t.text) for t in tickets))
        started = time.perf_counter()
        request_ids = [_new_request_id() for _ in tickets]
        state = self.models.state
        with span_of(self.tracer, "triage") as span:
            span.set_attribute("deskpilot.tenant", tenant)
            span.set_attribute("deskpilot.tickets", len(tickets))
            texts = [self.redactor.redact(t.text) for t in tickets]
            canary = [
                self.models.challenger is not None and to_challenger(state, tenant, t.id or rid)
                for t, rid in zip(tickets, request_ids, strict=True)
            ]
            groups = [[i for i, c in enumerate(canary) if c is side] for side in (False, True)]
            outcomes = await asyncio.gather(
                *(
                    self._predict([texts[i] for i in group], challenger=side, tenant=tenant)
                    for side, group in zip((False, True), groups, strict=True)
                    if group
                )
            )
            span.set_attribute("deskpilot.fallback", any(o.fallback for o in outcomes))
            span.set_attribute("deskpilot.canary", sum(canary))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        answers: list[Answer | None] = [None] * len(tickets)
        for group, outcome in zip([g for g in groups if g], outcomes, strict=True):
            for i, answer in zip(
                group, self._answers(outcome, [request_ids[i] for i in group], elapsed_ms), strict=True
            ):
                answers[i] = answer
        done = [
            replace(a, ticket_id=self.redactor.redact(t.id) if t.id else None)
            for a, t in zip((a for a in answers if a is not None), tickets, strict=True)
        ]
        for text, answer, ticket in zip(texts, done, tickets, strict=True):
            self._record(tenant, text, answer, http_request_id, ticket.channel)
        if self.shadow is not None and state.stage is Stage.SHADOW:
            self.shadow.submit(tenant, texts, [a.decision for a in done])
        return done

    def _answers(self, outcome: _Outcome, request_ids: list[str], elapsed_ms: float) -> list[Answer]:
        if outcome.probs is None or outcome.loaded is None:
            return [
                Answer(
                    TriageDecision(
                        rid, Prediction("", 0.0), Route.HUMAN, "none", outcome.reason, fallback=True
                    ),
                    self.models.name,
                    elapsed_ms,
                )
                for rid in request_ids
            ]
        loaded = outcome.loaded
        decided = loaded.model.decide(outcome.probs, top_k=self.limits.top_k)
        answers = []
        for rid, (prediction, route) in zip(request_ids, decided, strict=True):
            decision = TriageDecision(
                request_id=rid,
                prediction=prediction,
                route=route,
                model_version=loaded.version,
                reason=outcome.reason,
                fallback=outcome.fallback,
                review=route is Route.AUTO and in_review_sample(rid, self.limits.review_sample_rate),
            )
            answers.append(Answer(decision, loaded.name, elapsed_ms))
        return answers

    def _check_admission(self, tenant: str, chars: int) -> None:
        """Refuse (503) a request the champion's queue would refuse, before redaction spends work on it."""
        batcher = self._batchers.get(Role.CHAMPION)
        if batcher is None:
            return
        reason = batcher.refusal(
            tenant, chars, max_queued_chars=self.limits.max_queued_chars, budget_s=self.limits.model_timeout_s
        )
        if reason is None:
            return
        self.metrics.shed.labels(reason).inc()
        raise OverloadedError(
            "the service is at capacity; retry later",
            details={"reason": reason, "retry_after_s": batcher.retry_after_s()},
        )

    async def _predict(self, texts: list[str], *, challenger: bool = False, tenant: str = "") -> _Outcome:
        """Ask the challenger (canary) or champion, then the next in line: champion, then the fallback.

        Overload is not a model failure: an OverloadedError from the champion's or the fallback's queue is
        raised, not passed down the line (the next model would only queue the same texts again). A canary
        challenger's overload is passed to the champion, like any failure of the challenger.
        """
        if not self._batchers:
            raise RuntimeError("TriageService.start() was not awaited")
        chain = [Role.CHALLENGER] if challenger else []
        chain += [Role.CHAMPION, Role.FALLBACK]
        reasons: list[str] = []
        timeout = self.limits.model_timeout_s
        cap = self.limits.max_queued_chars
        for role in chain:
            started = time.perf_counter()
            try:
                probs, loaded = await self._batchers[role].predict(
                    texts, tenant=tenant, timeout_s=timeout, max_queued_chars=cap, whole=False
                )
            except OverloadedError as exc:
                if role is not Role.CHALLENGER:
                    self.metrics.shed.labels(str(exc.details.get("reason", SHED_QUEUE_FULL))).inc()
                    raise
                # a canary challenger too slow for its share is the rollout guard's to judge: the champion
                # answers these tickets, as it answers a challenger that fails
                reasons.append(f"{role} model overloaded: {exc.details.get('reason', SHED_QUEUE_FULL)}")
                self.metrics.fallbacks.labels("timeout").inc()
                self._observe(role, started, error=True)
                continue
            except Exception as exc:  # a model's failure is answered by the next in line, not by a 500
                kind = "timeout" if isinstance(exc, TimeoutError) else "error"
                reasons.append(
                    f"{role} model exceeded its {timeout:g}s budget"
                    if kind == "timeout"
                    else f"{role} model failed: {type(exc).__name__}: {exc}"
                )
                self.metrics.fallbacks.labels(kind).inc()
                self._observe(role, started, error=True)
                continue
            self._observe(role, started, error=False)
            if reasons:
                logger.warning("answered by the %s model: %s", role, "; ".join(reasons))
            return _Outcome(probs, loaded, bool(reasons), "; ".join(reasons))
        self.metrics.fallbacks.labels("unavailable").inc()
        return _Outcome(None, None, True, "; ".join(reasons) + "; routed to a person")

    def _observe(self, role: Role, started: float, *, error: bool) -> None:
        if role in WATCHED:
            self.monitor.observe_call(role, (time.perf_counter() - started) * 1000.0, error=error)

    def _record(
        self, tenant: str, text: str, answer: Answer, http_request_id: str | None, channel: str | None
    ) -> None:
        decision = answer.decision
        prediction = decision.prediction
        if prediction.intent:
            self.metrics.predictions.labels(prediction.intent, str(decision.route)).inc()
            self.metrics.confidence.observe(prediction.confidence)
        if self.writer is None:
            return
        record = DecisionRecord.from_decision(
            decision,
            tenant=tenant,
            model_name=answer.model_name,
            text=text,
            latency_ms=answer.latency_ms,
            ticket_id=answer.ticket_id,
            http_request_id=http_request_id,
            channel=channel,
        )
        self.writer.submit(record)  # the writer reports its depth to the queue gauge

    def _record_shadow(self, answers: list[ShadowRecord]) -> None:
        """Queue the challenger's answers for the shadow log (never blocks; dropped and counted when full)."""
        if self.shadow_writer is None:
            return
        for answer in answers:
            self.shadow_writer.submit(answer)

    async def feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        """Store an agent's verdict on a decision of this tenant (StoreNotFoundError otherwise).

        ``correct_intent`` must be a class of a model serving now, or ``OTHER_INTENT`` ("none of these"):
        anything else is refused (UnknownIntentError) before it reaches the store. While the decision log
        cannot write (the decision may still be in its buffer) the answer is DecisionPendingError, a
        "retry later", not a "not found" that would lose the verdict.
        """
        if self.store is None:
            raise LookupError("no store is configured")
        known = self._feedback_intents()
        if correct_intent not in known:
            raise UnknownIntentError(
                f"correct_intent must be one of the {len(known) - 1} intents the serving models know, "
                f"or {OTHER_INTENT!r} when none fits",
                details={"field": "correct_intent", "intents": sorted(known)},
            )
        try:
            record = await asyncio.to_thread(self.store.add_feedback, tenant, request_id, correct_intent)
        except StoreNotFoundError:
            if self.writer is None:  # no decision log here, nor in the other workers (same settings)
                raise
            # The decision may still wait in a write buffer: an integration that posts its verdict right
            # after the answer must not get a 404 for it. Flush ours; another worker's (same settings)
            # writes on its own within one flush interval, so wait two.
            flushed = True
            if self.writer.depth:
                flushed = await asyncio.to_thread(self.writer.flush, FEEDBACK_FLUSH_WAIT_S)
            else:
                await asyncio.sleep(2 * self.writer.flush_interval_s)
            try:
                record = await asyncio.to_thread(self.store.add_feedback, tenant, request_id, correct_intent)
            except StoreNotFoundError as exc:
                if flushed and self.writer.healthy:
                    raise
                raise DecisionPendingError(
                    "the decision log is behind (its database refuses writes now); retry this verdict later",
                    details={"retry_after_s": max(1, round(FEEDBACK_FLUSH_WAIT_S))},
                ) from exc
        self._observe_feedback(record)
        return record

    def _feedback_intents(self) -> frozenset[str]:
        """What a verdict may name: every class of the models serving now, and ``OTHER_INTENT``."""
        known = {OTHER_INTENT}
        for role in Role:
            loaded = self.models.serving(role)
            if loaded is not None:
                known.update(loaded.model.classes)
        return frozenset(known)

    def forget_shadow(self) -> None:
        if self.shadow is not None:
            self.shadow.forget()

    def _observe_feedback(self, record: FeedbackRecord) -> None:
        """Score whichever rollout models answered this request, for the feedback-accuracy rule.

        One verdict per (tenant, decision) in the monitor: a repeat or a changed verdict replaces the
        earlier one there, as it does in the store.
        """
        state = self.models.state
        correct = record.correct_intent
        scores: dict[Role, bool] = {}
        if record.model_version == state.champion:
            scores[Role.CHAMPION] = record.predicted_intent == correct
        elif record.model_version == state.challenger:
            scores[Role.CHALLENGER] = record.predicted_intent == correct
        shadow = self.shadow.answer_for(record.request_id) if self.shadow is not None else None
        if shadow is not None and shadow.model_version == state.challenger and shadow.tenant == record.tenant:
            scores[Role.CHALLENGER] = shadow.intent == correct
        self.monitor.observe_verdict(record.tenant, record.request_id, scores)

    def serving(self) -> dict[str, object]:
        """What serves, at what share: one entry per role, the rollout stage, shares, shadow agreement.

        ``primary`` repeats ``champion`` for clients of the first API version (deprecated, kept stable).
        """
        out: dict[str, object] = {}
        for role in Role:
            loaded = self.models.serving(role)
            out[str(role)] = None if loaded is None else _describe(loaded)
        out["primary"] = out[Role.CHAMPION]
        state = self.models.state
        champion, challenger = self.models.champion, self.models.challenger
        out["rollout"] = {
            "stage": str(state.stage),
            "percent": state.percent,
            "revision": state.revision,
            "updated_at": state.updated_at,
            "reason": state.reason,
        }
        shares: dict[str, float] = {}
        if champion is not None:
            share = state.canary_share if challenger is not None else 0.0
            shares[champion.uri] = 1.0 - share
            if challenger is not None and share > 0:
                shares[challenger.uri] = share
        out["shares"] = shares
        out["shadow"] = self.monitor.agreement.to_dict() if state.stage is Stage.SHADOW else None
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


def in_review_sample(request_id: str, rate: float) -> bool:
    """Whether a decision belongs to the audit sample: a hash of its id, so the choice is the same in every
    worker and independent of the ticket's content, confidence or tenant."""
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64
