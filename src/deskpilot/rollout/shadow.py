"""Shadow scoring: the challenger answers the same texts after the caller has its response.

Work is scheduled as a task once the champion's answers exist, so the caller never waits for it; when more
than ``max_inflight`` texts are already waiting, new ones are shed (counted) instead of queueing without
bound. Each comparison feeds the rollout monitor (agreement, confidence shift, route changes), the
challenger's answers go to ``on_answers`` (the service writes them to the shadow log, for the report), and
they are remembered per request id for a while, so feedback can score both models on the same requests.
Answers of the fallback model are not the champion's and are not compared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

from deskpilot.domain import Role, Route, TriageDecision
from deskpilot.models.artifact import TriageModel, predictions_from_proba
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.store.records import ShadowRecord

logger = logging.getLogger(__name__)
REMEMBERED = 100_000


class ServedModel(Protocol):
    """A loaded, registered version (the service's ``LoadedModel``)."""

    @property
    def model(self) -> TriageModel: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


#: Scores texts with the challenger: its probabilities and the version that produced them.
ChallengerPredict = Callable[[list[str]], Awaitable[tuple[np.ndarray, ServedModel]]]


class ShadowScorer:
    def __init__(
        self,
        predict: ChallengerPredict,
        monitor: RolloutMonitor,
        *,
        timeout_s: float,
        max_inflight: int = 512,
        on_answers: Callable[[list[ShadowRecord]], None] | None = None,
        on_shed: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._monitor = monitor
        self._on_shed = on_shed
        self.timeout_s = timeout_s
        self._max_inflight = max_inflight
        self._on_answers = on_answers
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._answers: OrderedDict[str, ShadowRecord] = OrderedDict()

    @property
    def inflight(self) -> int:
        return self._inflight

    def submit(self, tenant: str, texts: Sequence[str], decisions: Sequence[TriageDecision]) -> None:
        """Schedule the challenger on these texts of ``tenant`` (the champion's ``decisions`` on them);
        never blocks, sheds under load."""
        if self._inflight + len(texts) > self._max_inflight:
            if self._on_shed is not None:
                self._on_shed(len(texts))
            return
        self._inflight += len(texts)
        task = asyncio.get_running_loop().create_task(self._score(tenant, list(texts), list(decisions)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, tenant: str, texts: list[str], decisions: list[TriageDecision]) -> None:
        started = time.perf_counter()
        try:
            probs, loaded = await asyncio.wait_for(self._predict(texts), self.timeout_s)
        except Exception as exc:  # a failing shadow is measured, never felt by callers
            self._monitor.observe_call(Role.CHALLENGER, (time.perf_counter() - started) * 1000.0, error=True)
            logger.warning("shadow model failed: %s: %s", type(exc).__name__, exc)
            return
        finally:
            self._inflight -= len(texts)
        self._monitor.observe_call(Role.CHALLENGER, (time.perf_counter() - started) * 1000.0, error=False)
        shadow = []
        for champion, prediction in zip(
            decisions, predictions_from_proba(probs, loaded.model.classes), strict=True
        ):
            if not champion.prediction.intent or champion.fallback:
                continue
            route = loaded.model.route_for(prediction.confidence)
            self._monitor.observe_comparison(
                champion_intent=champion.prediction.intent,
                challenger_intent=prediction.intent,
                confidence_shift=prediction.confidence - champion.prediction.confidence,
                champion_auto=champion.route is Route.AUTO,
                challenger_auto=route is Route.AUTO,
                tenant=tenant,
            )
            try:
                record = ShadowRecord(
                    tenant=tenant,
                    request_id=champion.request_id,
                    model_name=loaded.name,
                    model_version=loaded.version,
                    intent=prediction.intent,
                    confidence=prediction.confidence,
                    route=route,
                )
            except ValueError as exc:  # e.g. a non-finite confidence: not an answer worth keeping
                logger.warning("shadow answer not kept: %s", exc)
                continue
            shadow.append(record)
        for item in shadow:
            self._answers[item.request_id] = item
        while len(self._answers) > REMEMBERED:
            self._answers.popitem(last=False)
        if self._on_answers is not None and shadow:
            try:
                self._on_answers(shadow)
            except Exception:  # the shadow log is best effort, like the shadow itself
                logger.exception("recording shadow answers failed")

    def answer_for(self, request_id: str) -> ShadowRecord | None:
        return self._answers.get(request_id)

    def forget(self) -> None:
        """A new challenger: earlier shadow answers belong to another model."""
        self._answers.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
