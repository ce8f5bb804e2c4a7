"""TriageService on fakes: the in-memory registry and store, the real writers, metrics, monitor and model
manager, and scripted models (champion v1, challenger v2, fallback v3 by ``@fallback``). No HTTP, no MLflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from deskpilot.domain import ModelRef, Role, Route, Ticket
from deskpilot.errors import StoreNotFoundError
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, read_state, write_state
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.split import to_challenger
from deskpilot.rollout.state import Stage
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import ModelManager
from deskpilot.service.triage import Answer, ServiceLimits, TriageService
from deskpilot.store.audit import InMemoryAuditLog
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.writer import BufferedWriter, ShadowWriter
from tests.unit.service_fakes import (
    FAIL,
    HANG,
    MODEL_NAME,
    NAN,
    RELEASE,
    installed,
    register,
    scripted,
    scripted_model,
    until,
)

NAME = MODEL_NAME
CHAMPION, CHALLENGER, FALLBACK = "1", "2", "3"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


@dataclass
class Harness:
    registry: InMemoryRegistry
    audit: InMemoryAuditLog
    manager: ModelManager
    store: InMemoryStore
    writer: BufferedWriter
    shadow_writer: ShadowWriter
    metrics: ServiceMetrics
    monitor: RolloutMonitor
    service: TriageService

    def stage(self, stage: str, percent: float | None = None) -> None:
        """Put the challenger (v2) in ``stage`` and let the manager follow."""
        ref = ModelRef(NAME, version=CHALLENGER)
        promote(self.registry, self.audit, ref, to=stage, percent=percent, actor="t", reason="t")
        self.manager.refresh()

    def run(self, scenario: Callable[[TriageService], Awaitable[T]]) -> T:
        """Run ``scenario`` on a started service, closed afterwards (which flushes both writers)."""

        async def main() -> T:
            await self.service.start()
            try:
                return await scenario(self.service)
            finally:
                RELEASE.set()  # a hanging model returns before its loop goes away
                await self.service.close()

        return asyncio.run(main())

    def model(self, role: Role) -> Any:
        return scripted(getattr(self.manager.serving(role), "model", None))

    def counted(self, metric: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(metric, labels) or 0.0


def build(*, timeout_s: float = 1.0, flush_interval_s: float = 0.01) -> Harness:
    registry = InMemoryRegistry()
    audit = InMemoryAuditLog()
    register(registry, scripted_model(confidence=0.9, threshold=0.5))
    register(registry, scripted_model(confidence=0.8, threshold=0.5))
    register(registry, scripted_model(confidence=0.7, threshold=0.5))
    promote(
        registry, audit, ModelRef(NAME, version=CHAMPION), to="champion", percent=None, actor="t", reason="t"
    )
    registry.set_alias(NAME, "fallback", FALLBACK)
    manager = ModelManager(registry, NAME)
    manager.refresh()
    store = InMemoryStore()
    metrics = ServiceMetrics()
    monitor = RolloutMonitor(window_s=60)
    writer = BufferedWriter(store, flush_interval_s=flush_interval_s)
    shadow_writer = ShadowWriter(store, flush_interval_s=flush_interval_s)
    service = TriageService(
        manager,
        store=store,
        writer=writer,
        shadow_writer=shadow_writer,
        metrics=metrics,
        monitor=monitor,
        limits=ServiceLimits(max_wait_ms=0, model_timeout_s=timeout_s),
    )
    return Harness(registry, audit, manager, store, writer, shadow_writer, metrics, monitor, service)


@pytest.fixture
def harnesses() -> Iterator[Callable[..., Harness]]:
    built: list[Harness] = []

    def make(**options: Any) -> Harness:
        built.append(build(**options))
        return built[-1]

    yield make
    for h in built:  # already closed by Harness.run; this covers a test that failed before it
        h.writer.close(1.0)
        h.shadow_writer.close(1.0)


@pytest.fixture
def h(harnesses: Callable[..., Harness]) -> Harness:
    return harnesses()


def triage(
    *texts: str, tenant: str = "acme", **options: Any
) -> Callable[[TriageService], Awaitable[list[Answer]]]:
    tickets = [Ticket(text, id=f"ticket-{i}") for i, text in enumerate(texts)]

    async def scenario(service: TriageService) -> list[Answer]:
        return await service.triage(tenant, tickets, **options)

    return scenario


def test_routes_auto_or_human_by_the_models_threshold(h: Harness) -> None:
    answers = h.run(triage("my card was stolen", "hello, anyone there?"))
    card, vague = (a.decision for a in answers)
    assert (card.prediction.intent, card.prediction.confidence, card.route) == ("card", 0.9, Route.AUTO)
    assert vague.prediction.confidence == pytest.approx(1 / 3)
    assert vague.route is Route.HUMAN, "1/3 is below the champion's threshold of 0.5"
    for decision in (card, vague):
        assert (decision.model_version, decision.fallback, decision.reason) == (CHAMPION, False, "")
    assert [a.intent for a in card.prediction.alternatives] == ["billing", "login"]
    assert len({card.request_id, vague.request_id}) == 2
    assert all(a.model_name == NAME for a in answers)
    assert h.counted("deskpilot_predictions_total", intent="card", route="auto") == 1
    assert h.counted("deskpilot_batch_size_count", role="champion") == 1, "one model call for the request"


def test_pii_is_redacted_before_the_model_and_the_store_see_the_text(h: Harness) -> None:
    [answer] = h.run(triage("my card is blocked, write to jane.doe@example.com"))
    seen = [text for batch in h.model(Role.CHAMPION).calls for text in batch]
    assert "my card is blocked, write to <EMAIL>" in seen
    assert not any("jane.doe" in text for text in seen)
    stored = h.store.get_decision("acme", answer.decision.request_id)
    assert stored is not None
    assert stored.text == "my card is blocked, write to <EMAIL>"


def test_decisions_are_logged_with_tenant_ticket_and_http_request_id(h: Harness) -> None:
    answers = h.run(triage("card lost", "billing error", http_request_id="http-42"))
    for i, answer in enumerate(answers):
        stored = h.store.get_decision("acme", answer.decision.request_id)
        assert stored is not None
        assert (stored.tenant, stored.ticket_id, stored.http_request_id) == ("acme", f"ticket-{i}", "http-42")
        assert (stored.model_name, stored.model_version) == (NAME, CHAMPION)
        assert (stored.intent, stored.route, stored.fallback) == (
            answer.decision.prediction.intent,
            answer.decision.route,
            False,
        )
        assert h.store.get_decision("globex", answer.decision.request_id) is None
    assert [d.intent for d in h.store.decisions("acme")] == ["billing", "card"]


@pytest.mark.parametrize(
    ("mode", "reason", "kind"),
    [
        pytest.param(FAIL, "champion model failed: RuntimeError: scripted failure", "error", id="raises"),
        pytest.param(NAN, "champion model failed: ValueError", "error", id="nan"),
        pytest.param(HANG, "champion model exceeded its 0.2s budget", "timeout", id="times-out"),
    ],
)
def test_a_failing_champion_is_answered_by_the_fallback_and_flagged(
    harnesses: Callable[..., Harness], mode: str, reason: str, kind: str
) -> None:
    h = harnesses(timeout_s=0.2)
    h.model(Role.CHAMPION).mode = mode
    [answer] = h.run(triage("my card was stolen"))
    decision = answer.decision
    assert (decision.model_version, decision.fallback, decision.prediction.intent) == (FALLBACK, True, "card")
    assert decision.prediction.confidence == pytest.approx(0.7)
    assert reason in decision.reason
    assert h.counted("deskpilot_fallback_total", reason=kind) == 1
    assert h.monitor.stats(Role.CHAMPION).errors == 1
    stored = h.store.get_decision("acme", decision.request_id)
    assert stored is not None
    assert (stored.model_version, stored.fallback, stored.reason) == (FALLBACK, True, decision.reason)


def test_when_no_model_answers_the_ticket_goes_to_a_person_with_the_reason(h: Harness) -> None:
    h.model(Role.CHAMPION).mode = FAIL
    h.model(Role.FALLBACK).mode = FAIL
    answers = h.run(triage("my card was stolen", "refund my billing"))
    for answer in answers:
        decision = answer.decision
        assert (decision.route, decision.fallback, decision.prediction.intent) == (Route.HUMAN, True, "")
        assert "champion model failed" in decision.reason
        assert "fallback model failed" in decision.reason
        assert decision.reason.endswith("routed to a person")
        assert h.store.get_decision("acme", decision.request_id) is not None, "still logged"
    assert h.counted("deskpilot_fallback_total", reason="unavailable") == 1
    assert h.counted("deskpilot_fallback_total", reason="error") == 2


def test_with_no_model_loaded_at_all_the_ticket_goes_to_a_person() -> None:
    registry = InMemoryRegistry()
    service = TriageService(ModelManager(registry, NAME), store=None, writer=None, metrics=ServiceMetrics())

    async def scenario() -> list[Answer]:
        await service.start()
        try:
            return await service.triage("acme", [Ticket("my card")])
        finally:
            await service.close()

    [answer] = asyncio.run(scenario())
    assert (answer.decision.route, answer.decision.fallback) == (Route.HUMAN, True)
    assert "no model is loaded" in answer.decision.reason
    assert service.ready()[0] is False


TEXTS = [f"card question {i}" for i in range(12)]


@pytest.mark.parametrize(
    ("stage", "percent", "answered_by"),
    [
        pytest.param("canary", 100.0, CHALLENGER, id="canary-100"),
        pytest.param("canary", 0.0, CHAMPION, id="canary-0"),
        pytest.param("shadow", None, CHAMPION, id="shadow"),
        pytest.param(None, None, CHAMPION, id="no-rollout"),
    ],
)
def test_who_answers_follows_the_rollout_stage(
    h: Harness, stage: str | None, percent: float | None, answered_by: str
) -> None:
    if stage == "canary" and percent == 0.0:  # promote refuses a 0% canary; the state may still hold one
        state = read_state(h.registry, NAME)
        new = state.next(actor="t", reason="t", challenger=CHALLENGER, stage=Stage.CANARY, percent=0.0)
        write_state(h.registry, NAME, new, expected_revision=state.revision)
        h.manager.refresh()
    elif stage is not None:
        h.stage(stage, percent)
    assert h.manager.challenger is not None or stage is None
    answers = h.run(triage(*TEXTS))
    assert {a.decision.model_version for a in answers} == {answered_by}
    assert not any(a.decision.fallback for a in answers)
    watched = Role.CHALLENGER if answered_by == CHALLENGER else Role.CHAMPION
    assert h.monitor.stats(watched).requests >= 1


def test_a_canary_splits_by_tenant_and_ticket_id(h: Harness) -> None:
    h.stage("canary", 50)
    answers = h.run(triage(*TEXTS))
    state = h.manager.state
    expected = [
        CHALLENGER if to_challenger(state, "acme", f"ticket-{i}") else CHAMPION for i in range(len(TEXTS))
    ]
    assert [a.decision.model_version for a in answers] == expected
    assert set(expected) == {CHAMPION, CHALLENGER}, "12 tickets at 50%: both sides get some"


def test_a_failing_canary_challenger_is_answered_by_the_champion(h: Harness) -> None:
    h.stage("canary", 100)
    h.model(Role.CHALLENGER).mode = FAIL
    answers = h.run(triage("my card", "billing please"))
    for answer in answers:
        assert (answer.decision.model_version, answer.decision.fallback) == (CHAMPION, True)
        assert "challenger model failed" in answer.decision.reason
    assert h.monitor.stats(Role.CHALLENGER).errors == 1


def test_in_shadow_the_challenger_scores_the_same_texts_and_its_answers_are_logged(h: Harness) -> None:
    h.stage("shadow")

    async def scenario(service: TriageService) -> list[Answer]:
        answers = await triage("card stolen, mail me at jane.doe@example.com", "billing question")(service)
        assert service.shadow is not None
        await until(lambda: h.monitor.agreement.compared == 2)
        return answers

    answers = h.run(scenario)
    seen = [text for batch in h.model(Role.CHALLENGER).calls for text in batch]
    assert "card stolen, mail me at <EMAIL>" in seen
    assert "billing question" in seen
    assert all(a.decision.model_version == CHAMPION for a in answers), "nobody sees the shadow's answers"
    pairs = h.store.shadow_comparison(NAME, CHALLENGER)
    assert sorted(p.request_id for p in pairs) == sorted(a.decision.request_id for a in answers)
    assert all(p.agreed and p.challenger_confidence == pytest.approx(0.8) for p in pairs)
    assert h.monitor.agreement.agreed == 2
    assert h.monitor.stats(Role.CHALLENGER).requests == 1


def test_feedback_on_a_decision_of_another_tenant_is_not_found(h: Harness) -> None:
    async def scenario(service: TriageService) -> None:
        [answer] = await triage("my card", tenant="acme")(service)
        with pytest.raises(StoreNotFoundError):
            await service.feedback("globex", answer.decision.request_id, "card")
        record = await service.feedback("acme", answer.decision.request_id, "card")
        assert (record.tenant, record.predicted_intent, record.correct) == ("acme", "card", True)

    h.run(scenario)
    assert h.store.feedback("globex") == []
    assert len(h.store.feedback("acme")) == 1


def test_feedback_right_after_the_answer_finds_the_buffered_decision(
    harnesses: Callable[..., Harness],
) -> None:
    h = harnesses(flush_interval_s=5.0)  # the decision waits in the write buffer

    async def scenario(service: TriageService) -> str:
        [answer] = await triage("my card")(service)
        assert h.writer.depth == 1
        record = await asyncio.wait_for(service.feedback("acme", answer.decision.request_id, "login"), 2.0)
        return record.predicted_intent

    assert h.run(scenario) == "card"


def test_feedback_feeds_the_rollout_monitor(h: Harness) -> None:
    async def scenario(service: TriageService) -> None:
        right, wrong = await triage("my card", "billing")(service)
        await service.feedback("acme", right.decision.request_id, "card")
        await service.feedback("acme", wrong.decision.request_id, "login")

    h.run(scenario)
    stats = h.monitor.stats(Role.CHAMPION)
    assert (stats.feedback, stats.feedback_correct) == (2, 1)
    assert h.monitor.stats(Role.CHALLENGER).feedback == 0


def test_feedback_in_shadow_scores_both_models_on_the_same_request(h: Harness) -> None:
    h.stage("shadow")

    async def scenario(service: TriageService) -> None:
        [answer] = await triage("my card")(service)
        await until(lambda: h.monitor.agreement.compared == 1)
        await service.feedback("acme", answer.decision.request_id, "card")

    h.run(scenario)
    assert h.monitor.stats(Role.CHAMPION).feedback_correct == 1
    assert h.monitor.stats(Role.CHALLENGER).feedback_correct == 1
    agreement = h.monitor.agreement
    assert (agreement.judged, agreement.champion_correct, agreement.challenger_correct) == (1, 1, 1)


def test_feedback_on_a_canary_answer_scores_the_challenger(h: Harness) -> None:
    h.stage("canary", 100)

    async def scenario(service: TriageService) -> None:
        [answer] = await triage("my card")(service)
        await service.feedback("acme", answer.decision.request_id, "billing")

    h.run(scenario)
    challenger = h.monitor.stats(Role.CHALLENGER)
    assert (challenger.feedback, challenger.feedback_correct) == (1, 0)
    assert h.monitor.stats(Role.CHAMPION).feedback == 0


def uri(version: str) -> str:
    return f"models:/{NAME}/{version}"


@pytest.mark.parametrize(
    ("stage", "percent", "shares"),
    [
        pytest.param(None, None, {CHAMPION: 1.0}, id="champion-only"),
        pytest.param("shadow", None, {CHAMPION: 1.0}, id="shadow"),
        pytest.param("canary", 30.0, {CHAMPION: 0.7, CHALLENGER: 0.3}, id="canary-30"),
        pytest.param("canary", 100.0, {CHAMPION: 0.0, CHALLENGER: 1.0}, id="canary-100"),
    ],
)
def test_serving_describes_every_role_and_shares_that_sum_to_one(
    h: Harness, stage: str | None, percent: float | None, shares: dict[str, float]
) -> None:
    if stage is not None:
        h.stage(stage, percent)
    out = h.service.serving()
    champion, challenger, fallback = (out[str(role)] for role in Role)
    assert isinstance(champion, dict)
    assert isinstance(fallback, dict)
    assert (champion["uri"], champion["version"], champion["threshold"]) == (uri(CHAMPION), CHAMPION, 0.5)
    assert (fallback["uri"], fallback["version"]) == (uri(FALLBACK), FALLBACK)
    assert out["primary"] == champion
    if stage is None:
        assert challenger is None
    else:
        assert isinstance(challenger, dict)
        assert challenger["version"] == CHALLENGER
    served = out["shares"]
    assert isinstance(served, dict)
    assert served == pytest.approx({uri(v): share for v, share in shares.items()})
    assert sum(served.values()) == pytest.approx(1.0)
    rollout = out["rollout"]
    assert isinstance(rollout, dict)
    assert rollout["stage"] == (stage or "none")
    assert (out["shadow"] is not None) == (stage == "shadow")


def test_ready_needs_a_champion_and_a_reachable_store(h: Harness) -> None:
    assert h.service.ready() == (True, [])
    h.store.available = False
    ready, problems = h.service.ready()
    assert ready is False
    assert any(p.startswith("store unreachable") for p in problems)
