"""Shadow scoring: the challenger answers the same texts after the caller has its response.

Work is scheduled as a task once the champion's answers exist, so the caller never waits for it; when more
than ``max_inflight`` texts are already waiting, new ones are shed (counted) instead of queueing without
bound. Each comparison feeds the rollout monitor (agreement, confidence shift, route changes), and the
challenger's answers are remembered per request id for a while, so feedback can score both models on the
same requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deskpilot.models.artifact import predictions_from_proba
from deskpilot.rollout.monitor import CHALLENGER_ROLE, RolloutMonitor
from deskpilot.service.batcher import MicroBatcher
from deskpilot.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from deskpilot.service.models import LoadedModel
    from deskpilot.service.triage import Answer

logger = logging.getLogger(__name__)
REMEMBERED = 100_000


@dataclass(frozen=True)
class ShadowAnswer:
    request_id: str
    model_version: str
    intent: str
    confidence: float
    auto: bool


class ShadowScorer:
    def __init__(
        self,
        batcher: MicroBatcher[LoadedModel],
        monitor: RolloutMonitor,
        metrics: ServiceMetrics,
        *,
        timeout_s: float,
        max_inflight: int = 512,
        on_answers: Callable[[list[ShadowAnswer]], None] | None = None,
    ) -> None:
        self._batcher = batcher
        self._monitor = monitor
        self._metrics = metrics
        self.timeout_s = timeout_s
        self._max_inflight = max_inflight
        self._on_answers = on_answers
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._answers: OrderedDict[str, ShadowAnswer] = OrderedDict()

    @property
    def inflight(self) -> int:
        return self._inflight

    def submit(self, texts: Sequence[str], answers: Sequence[Answer]) -> None:
        """Schedule the challenger on these texts; never blocks, sheds under load."""
        if self._inflight + len(texts) > self._max_inflight:
            self._metrics.shadow_shed.inc(len(texts))
            return
        self._inflight += len(texts)
        task = asyncio.get_running_loop().create_task(self._score(list(texts), list(answers)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, texts: list[str], answers: list[Answer]) -> None:
        started = time.perf_counter()
        try:
            probs, loaded = await asyncio.wait_for(self._batcher.predict(texts), self.timeout_s)
        except Exception as exc:  # a failing shadow is measured, never felt by callers
            self._monitor.observe_call(CHALLENGER_ROLE, (time.perf_counter() - started) * 1000.0, error=True)
            logger.warning("shadow model failed: %s: %s", type(exc).__name__, exc)
            return
        finally:
            self._inflight -= len(texts)
        self._monitor.observe_call(CHALLENGER_ROLE, (time.perf_counter() - started) * 1000.0, error=False)
        shadow = []
        for answer, prediction in zip(
            answers, predictions_from_proba(probs, loaded.model.classes), strict=True
        ):
            champion = answer.decision
            if not champion.prediction.intent:
                continue
            auto = loaded.model.route_for(prediction.confidence).value == "auto"
            self._monitor.observe_comparison(
                champion_intent=champion.prediction.intent,
                challenger_intent=prediction.intent,
                confidence_shift=prediction.confidence - champion.prediction.confidence,
                champion_auto=champion.route.value == "auto",
                challenger_auto=auto,
            )
            shadow.append(
                ShadowAnswer(
                    champion.request_id, loaded.version, prediction.intent, prediction.confidence, auto
                )
            )
        for item in shadow:
            self._answers[item.request_id] = item
        while len(self._answers) > REMEMBERED:
            self._answers.popitem(last=False)
        if self._on_answers is not None and shadow:
            self._on_answers(shadow)

    def answer_for(self, request_id: str) -> ShadowAnswer | None:
        return self._answers.get(request_id)

    def forget(self) -> None:
        """A new challenger: earlier shadow answers belong to another model."""
        self._answers.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
