"""ShadowScorer with a fake challenger call: comparisons, shed load, answers remembered per request, and a
failing challenger that nobody but the monitor notices."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from deskpilot.domain import Prediction, Role, Route, TriageDecision
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.shadow import ShadowScorer
from deskpilot.service.models import LoadedModel
from deskpilot.store.records import ShadowRecord
from tests.unit.service_fakes import CLASSES, MODEL_NAME, installed, scripted_model, until

CHALLENGER = LoadedModel(model=scripted_model(confidence=0.6, threshold=0.7), name=MODEL_NAME, version="2")


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


class Challenger:
    """The challenger's batched call: scripted rows, or a failure, or a wait for ``release``."""

    def __init__(self, *, error: Exception | None = None, hold: bool = False) -> None:
        self.error = error
        self.hold = hold
        self.release: asyncio.Event | None = None
        self.seen: list[list[str]] = []

    async def __call__(self, texts: list[str]) -> tuple[np.ndarray, LoadedModel]:
        self.seen.append(texts)
        if self.hold:
            self.release = self.release or asyncio.Event()
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return CHALLENGER.predict_proba(texts), CHALLENGER


def decision(
    request_id: str, intent: str, confidence: float = 0.9, *, fallback: bool = False
) -> TriageDecision:
    route = Route.AUTO if confidence >= 0.5 else Route.HUMAN
    return TriageDecision(request_id, Prediction(intent, confidence), route, "1", fallback=fallback)


def test_the_challenger_is_compared_with_the_champion_and_its_answers_kept() -> None:
    monitor = RolloutMonitor(window_s=60)
    logged: list[list[ShadowRecord]] = []
    challenger = Challenger()

    async def scenario() -> ShadowScorer:
        scorer = ShadowScorer(challenger, monitor, timeout_s=1.0, on_answers=logged.append)
        scorer.submit(
            "acme",
            ["my card is gone", "a billing question", "hello"],
            [decision("r1", "card"), decision("r2", "login"), decision("r3", "billing", 0.4)],
        )
        await until(lambda: scorer.inflight == 0 and bool(logged))
        await scorer.close()
        return scorer

    scorer = asyncio.run(scenario())
    assert challenger.seen == [["my card is gone", "a billing question", "hello"]]
    [records] = logged
    assert [(r.request_id, r.intent) for r in records] == [
        ("r1", "card"),
        ("r2", "billing"),
        ("r3", CLASSES[0]),
    ]
    assert all((r.tenant, r.model_name, r.model_version) == ("acme", MODEL_NAME, "2") for r in records)
    assert records[0].route is Route.HUMAN, "0.6 is below the challenger's own threshold of 0.7"
    agreement = monitor.agreement
    assert (agreement.compared, agreement.agreed) == (3, 2)
    assert agreement.auto_to_human == 2  # r1 and r2: auto for the champion, human for the challenger
    assert agreement.confidence_shift_sum == pytest.approx((0.6 - 0.9) * 2 + (1 / 3 - 0.4))
    stats = monitor.stats(Role.CHALLENGER)
    assert (stats.requests, stats.errors, stats.compared, stats.disagreements) == (1, 0, 3, 1)

    remembered = scorer.answer_for("r2")
    assert remembered is not None
    assert (remembered.tenant, remembered.intent) == ("acme", "billing")
    scorer.forget()
    assert scorer.answer_for("r1") is None
    assert scorer.answer_for("r2") is None


def test_answers_of_the_fallback_or_of_nobody_are_not_compared() -> None:
    monitor = RolloutMonitor(window_s=60)
    logged: list[list[ShadowRecord]] = []

    async def scenario() -> ShadowScorer:
        scorer = ShadowScorer(Challenger(), monitor, timeout_s=1.0, on_answers=logged.append)
        human = TriageDecision("r3", Prediction("", 0.0), Route.HUMAN, "none", "no model", fallback=True)
        scorer.submit(
            "acme",
            ["card one", "card two", "card three"],
            [decision("r1", "card", fallback=True), decision("r2", "card"), human],
        )
        await until(lambda: scorer.inflight == 0 and bool(logged))
        return scorer

    scorer = asyncio.run(scenario())
    assert [r.request_id for batch in logged for r in batch] == ["r2"]
    assert monitor.agreement.compared == 1
    assert scorer.answer_for("r1") is None
    assert scorer.answer_for("r3") is None
    assert scorer.answer_for("r2") is not None


def test_work_beyond_max_inflight_is_shed_and_counted() -> None:
    shed: list[int] = []
    challenger = Challenger(hold=True)

    async def scenario() -> tuple[int, int, ShadowScorer]:
        scorer = ShadowScorer(
            challenger, RolloutMonitor(window_s=60), timeout_s=1.0, max_inflight=3, on_shed=shed.append
        )
        scorer.submit("acme", ["card a", "card b"], [decision("a", "card"), decision("b", "card")])
        scorer.submit("acme", ["card c", "card d"], [decision("c", "card"), decision("d", "card")])
        scorer.submit("acme", ["card e"], [decision("e", "card")])
        await until(lambda: len(challenger.seen) == 2)
        busy = scorer.inflight
        assert challenger.release is not None
        challenger.release.set()
        await until(lambda: scorer.inflight == 0)
        after = scorer.inflight
        return busy, after, scorer

    busy, after, scorer = asyncio.run(scenario())
    assert shed == [2], "2 more texts would have made 4 in flight, over the limit of 3"
    assert busy == 3
    assert after == 0
    assert challenger.seen == [["card a", "card b"], ["card e"]]
    assert scorer.answer_for("c") is None
    assert scorer.answer_for("e") is not None


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"error": RuntimeError("challenger broke")}, id="raises"),
        pytest.param({"hold": True}, id="times-out"),
    ],
)
def test_a_failing_challenger_is_an_error_call_in_the_monitor_and_nothing_else(
    options: dict[str, Any],
) -> None:
    challenger = Challenger(**options)
    monitor = RolloutMonitor(window_s=60)
    logged: list[list[ShadowRecord]] = []

    async def scenario() -> ShadowScorer:
        scorer = ShadowScorer(challenger, monitor, timeout_s=0.05, on_answers=logged.append)
        scorer.submit("acme", ["card a"], [decision("a", "card")])
        await until(lambda: scorer.inflight == 0)
        await scorer.close()
        return scorer

    scorer = asyncio.run(scenario())
    stats = monitor.stats(Role.CHALLENGER)
    assert (stats.requests, stats.errors, stats.compared) == (1, 1, 0)
    assert monitor.stats(Role.CHAMPION).requests == 0
    assert monitor.agreement.compared == 0
    assert logged == []
    assert scorer.answer_for("a") is None


def test_a_failing_shadow_log_does_not_lose_the_comparison() -> None:
    monitor = RolloutMonitor(window_s=60)

    def broken_log(records: list[ShadowRecord]) -> None:
        raise OSError("disk full")

    async def scenario() -> ShadowScorer:
        scorer = ShadowScorer(Challenger(), monitor, timeout_s=1.0, on_answers=broken_log)
        scorer.submit("acme", ["card a"], [decision("a", "card")])
        await until(lambda: scorer.inflight == 0)
        return scorer

    scorer = asyncio.run(scenario())
    assert monitor.agreement.compared == 1
    assert scorer.answer_for("a") is not None


def test_close_cancels_work_in_flight() -> None:
    challenger = Challenger(hold=True)

    async def scenario() -> ShadowScorer:
        scorer = ShadowScorer(challenger, RolloutMonitor(window_s=60), timeout_s=5.0)
        scorer.submit("acme", ["card a", "card b"], [decision("a", "card"), decision("b", "card")])
        await until(lambda: bool(challenger.seen))
        await asyncio.wait_for(scorer.close(), 1.0)
        return scorer

    scorer = asyncio.run(scenario())
    assert scorer.inflight == 0
    assert scorer.answer_for("a") is None
