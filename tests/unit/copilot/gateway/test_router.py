"""The fallback chain with scripted providers: retries, fallbacks, breaker and budget skips, cache, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from deskpilot.copilot.gateway.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    FailureKind,
    ProviderError,
    Usage,
)
from deskpilot.copilot.gateway.breaker import CircuitBreaker
from deskpilot.copilot.gateway.budget import Budgets, BudgetUsage, InMemoryBudgetLedger
from deskpilot.copilot.gateway.cache import ResponseCache
from deskpilot.copilot.gateway.config import BreakerConfig, BudgetConfig, BudgetLimit
from deskpilot.copilot.gateway.fake import ScriptedProvider, Step
from deskpilot.copilot.gateway.retry import RetryPolicy
from deskpilot.copilot.gateway.router import Attempt, Gateway, GatewayExhausted, Route
from tests.unit.copilot.gateway.clocks import FakeClock

DAY = "2025-06-01"
REQUEST = ChatRequest((ChatMessage("user", "Where is my card?"),), tenant="acme", max_tokens=50)
K = FailureKind


def err(kind: FailureKind, retry_after_s: float | None = None, usage: Usage | None = None) -> ProviderError:
    return ProviderError(kind, f"scripted {kind.value}", retry_after_s=retry_after_s, usage=usage)


def route(provider: ScriptedProvider, clock: FakeClock, *, attempts: int = 3, threshold: int = 5) -> Route:
    return Route(
        provider,
        retry=RetryPolicy(max_attempts=attempts, backoff_base_s=0.1, backoff_max_s=1.0),
        breaker=CircuitBreaker(BreakerConfig(failure_threshold=threshold, cooldown_s=30), clock=clock),
        prompt_price_per_1k=1.0,
        completion_price_per_1k=1.0,
    )


def gateway(routes: Sequence[Route], clock: FakeClock, **kwargs: object) -> Gateway:
    return Gateway(routes, clock=clock, sleep=clock.sleep, rand=lambda: 1.0, **kwargs)  # type: ignore[arg-type]


def scripted(name: str, *steps: Step, default: Step = "fine") -> ScriptedProvider:
    return ScriptedProvider(name, steps, default=default)


def kinds(attempts: Sequence[Attempt]) -> list[tuple[str, FailureKind, int]]:
    return [(a.provider, a.kind, a.attempt) for a in attempts]


def test_transient_failures_are_retried_on_the_same_provider(clock: FakeClock) -> None:
    first, second = scripted("first", err(K.TIMEOUT), err(K.SERVER_ERROR)), scripted("second")
    gw = gateway([route(first, clock), route(second, clock)], clock)
    answer = asyncio.run(gw.complete(REQUEST))
    assert (answer.text, answer.provider) == ("fine", "first")
    assert len(first.requests) == 3
    assert second.requests == []
    assert clock.sleeps == [0.1, 0.2]
    assert gw.stats.calls["first"] == 3
    assert gw.stats.failures_by_kind() == {K.TIMEOUT: 1, K.SERVER_ERROR: 1}
    assert gw.stats.fallbacks == 0


@pytest.mark.parametrize("kind", [K.REFUSED, K.MALFORMED, K.TRUNCATED])
def test_non_retryable_failures_go_straight_to_the_next_provider(clock: FakeClock, kind: FailureKind) -> None:
    first, second = scripted("first", err(kind)), scripted("second", "from second")
    gw = gateway([route(first, clock), route(second, clock)], clock)
    assert asyncio.run(gw.complete(REQUEST)).text == "from second"
    assert len(first.requests) == 1
    assert clock.sleeps == []
    assert gw.stats.fallbacks == 1


def test_exhaustion_carries_every_try_and_skip(clock: FakeClock) -> None:
    first = scripted("first", default=err(K.CONNECTION))
    second = scripted("second", default=err(K.MALFORMED))
    gw = gateway([route(first, clock, attempts=2), route(second, clock)], clock)
    with pytest.raises(GatewayExhausted) as info:
        asyncio.run(gw.complete(REQUEST))
    assert kinds(info.value.attempts) == [
        ("first", K.CONNECTION, 1),
        ("first", K.CONNECTION, 2),
        ("second", K.MALFORMED, 1),
    ]
    assert info.value.code == "llm_unavailable"
    assert info.value.details["attempts"][2] == {"provider": "second", "kind": "malformed"}
    assert gw.stats.exhausted == 1


def test_retry_after_is_honoured(clock: FakeClock) -> None:
    first = scripted("first", err(K.RATE_LIMITED, retry_after_s=2.5))
    gw = gateway([route(first, clock)], clock)
    assert asyncio.run(gw.complete(REQUEST)).text == "fine"
    assert clock.sleeps == [2.5]


def test_an_open_breaker_skips_the_provider_without_a_call(clock: FakeClock) -> None:
    first, second = scripted("first", default=err(K.SERVER_ERROR)), scripted("second")
    gw = gateway([route(first, clock, attempts=1, threshold=2), route(second, clock)], clock)
    for _ in range(2):
        asyncio.run(gw.complete(REQUEST))
    assert len(first.requests) == 2
    answer = asyncio.run(gw.complete(REQUEST))
    assert answer.provider == "second"
    assert len(first.requests) == 2, "open: no call"
    assert gw.stats.failures["first", K.CIRCUIT_OPEN] == 1


def test_the_breaker_stops_retries_once_it_opens(clock: FakeClock) -> None:
    first = scripted("first", default=err(K.TIMEOUT))
    gw = gateway([route(first, clock, attempts=10, threshold=3), route(scripted("second"), clock)], clock)
    assert asyncio.run(gw.complete(REQUEST)).provider == "second"
    assert len(first.requests) == 3


def test_a_half_open_probe_gets_one_try_and_closes_on_success(clock: FakeClock) -> None:
    first = scripted("first", err(K.TIMEOUT), err(K.TIMEOUT))
    gw = gateway([route(first, clock, attempts=3, threshold=1), route(scripted("second"), clock)], clock)
    asyncio.run(gw.complete(REQUEST))
    clock.advance(30)
    assert asyncio.run(gw.complete(REQUEST)).provider == "second"
    assert len(first.requests) == 2, "the probe failed on its single try: no retries while half-open"
    clock.advance(30)
    assert asyncio.run(gw.complete(REQUEST)).provider == "first"
    assert gw.routes[0].breaker.state == "closed"


def budgeted(limit: BudgetLimit, ledger: InMemoryBudgetLedger) -> Budgets:
    return Budgets(BudgetConfig(default=limit), ledger, now=lambda: datetime(2025, 6, 1, tzinfo=UTC))


def test_budget_refusal_skips_the_provider_without_a_call(clock: FakeClock) -> None:
    ledger = InMemoryBudgetLedger()
    first = scripted("first")
    gw = gateway([route(first, clock)], clock, budgets=budgeted(BudgetLimit(tokens=60), ledger))
    with pytest.raises(GatewayExhausted) as info:
        asyncio.run(gw.complete(REQUEST))
    assert kinds(info.value.attempts) == [("first", K.BUDGET, 0)]
    assert first.requests == []


def test_settles_actual_usage_including_tokens_spent_by_failures(clock: FakeClock) -> None:
    ledger = InMemoryBudgetLedger()
    spent = Usage(20, 50, 0.07)
    answer = Completion("ok", "second", "m", prompt_tokens=20, completion_tokens=5, cost_usd=0.025)
    first, second = scripted("first", err(K.TRUNCATED, usage=spent)), scripted("second", answer)
    gw = gateway([route(first, clock), route(second, clock)], clock, budgets=budgeted(BudgetLimit(), ledger))
    asyncio.run(gw.complete(REQUEST))
    usage = ledger.usage("acme", DAY)
    assert usage.spent_tokens == 70 + 25
    assert usage.spent_cost_usd == pytest.approx(0.095)
    assert (usage.reserved_tokens, usage.reserved_cost_usd) == (0, pytest.approx(0.0))


def test_concurrent_calls_never_together_exceed_the_budget(clock: FakeClock) -> None:
    ledger = InMemoryBudgetLedger()
    worst = 3 + 4 + 6 + 50  # prompt estimate + max_tokens
    limit = BudgetLimit(tokens=worst * 5)
    provider = ScriptedProvider(
        "first",
        default=Completion("ok", "first", "m", prompt_tokens=13, completion_tokens=50, cost_usd=0.0),
        delay_s=0.01,
    )
    gw = Gateway([route(provider, clock)], budgets=budgeted(limit, ledger))

    async def burst() -> list[Completion | BaseException]:
        return await asyncio.gather(*(gw.complete(REQUEST) for _ in range(40)), return_exceptions=True)

    results = asyncio.run(burst())
    answered = [r for r in results if isinstance(r, Completion)]
    refused = [r for r in results if isinstance(r, GatewayExhausted)]
    assert len(answered) + len(refused) == 40
    assert len(provider.requests) == len(answered) <= 5
    assert all(a.kind is K.BUDGET for r in refused for a in r.attempts)
    usage = ledger.usage("acme", DAY)
    assert limit.tokens is not None
    assert usage.spent_tokens <= limit.tokens
    assert usage.reserved_tokens == 0


def test_a_cancelled_call_gives_back_its_reservation(clock: FakeClock) -> None:
    ledger = InMemoryBudgetLedger()
    slow = ScriptedProvider("slow", delay_s=10)
    gw = Gateway([route(slow, clock)], budgets=budgeted(BudgetLimit(tokens=1000), ledger))

    async def scenario() -> None:
        task = asyncio.create_task(gw.complete(REQUEST))
        while not slow.requests:
            await asyncio.sleep(0.001)
        assert ledger.usage("acme", DAY).reserved_tokens > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert ledger.usage("acme", DAY) == BudgetUsage()


def test_a_cache_hit_makes_no_call_and_costs_nothing(clock: FakeClock) -> None:
    ledger = InMemoryBudgetLedger()
    answer = Completion("ok", "first", "fake-model", prompt_tokens=20, completion_tokens=5, cost_usd=0.5)
    first = scripted("first", answer)
    gw = gateway(
        [route(first, clock)],
        clock,
        cache=ResponseCache(clock=clock),
        budgets=budgeted(BudgetLimit(), ledger),
    )
    assert asyncio.run(gw.complete(REQUEST)) == answer
    again = asyncio.run(gw.complete(REQUEST))
    assert again.cached
    assert again.cost_usd == 0.0
    assert len(first.requests) == 1
    assert ledger.usage("acme", DAY).spent_cost_usd == pytest.approx(0.5), "the hit reserved nothing"
    assert gw.stats.cache_hits == 1


def test_failures_are_never_cached(clock: FakeClock) -> None:
    first = scripted("first", err(K.MALFORMED), "second try")
    gw = gateway([route(first, clock)], clock, cache=ResponseCache(clock=clock))
    with pytest.raises(GatewayExhausted):
        asyncio.run(gw.complete(REQUEST))
    assert asyncio.run(gw.complete(REQUEST)).text == "second try"


def test_a_gateway_deadline_skips_what_is_left_of_the_chain(clock: FakeClock) -> None:
    class Slow(ScriptedProvider):
        async def complete(self, request: ChatRequest) -> Completion:
            clock.advance(3.0)
            return await super().complete(request)

    first, second = Slow("first", default=err(K.SERVER_ERROR)), scripted("second")
    gw = gateway([route(first, clock, attempts=5), route(second, clock)], clock, deadline_s=2.5)
    with pytest.raises(GatewayExhausted) as info:
        asyncio.run(gw.complete(REQUEST))
    assert kinds(info.value.attempts) == [("first", K.SERVER_ERROR, 1), ("second", K.TIMEOUT, 0)]
    assert second.requests == []


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_request(self) -> None:
        self.events.append(("request",))

    def on_cache_hit(self, provider: str) -> None:
        self.events.append(("hit", provider))

    def on_call(self, provider: str) -> None:
        self.events.append(("call", provider))

    def on_success(self, provider: str, completion: Completion, elapsed_s: float) -> None:
        self.events.append(("success", provider))

    def on_failure(self, provider: str, kind: FailureKind) -> None:
        self.events.append(("failure", provider, kind.value))

    def on_fallback(self, provider: str) -> None:
        self.events.append(("fallback", provider))

    def on_exhausted(self) -> None:
        self.events.append(("exhausted",))


def test_observers_see_every_event_in_order(clock: FakeClock) -> None:
    recorder = Recorder()
    first, second = scripted("first", err(K.REFUSED)), scripted("second")
    gw = gateway([route(first, clock), route(second, clock)], clock, observers=[recorder])
    asyncio.run(gw.complete(REQUEST))
    assert recorder.events == [
        ("request",),
        ("call", "first"),
        ("failure", "first", "refused"),
        ("fallback", "first"),
        ("call", "second"),
        ("success", "second"),
    ]


def test_aclose_closes_every_provider(clock: FakeClock) -> None:
    providers = [scripted("a"), scripted("b")]

    async def scenario() -> None:
        async with gateway([route(p, clock) for p in providers], clock):
            pass

    asyncio.run(scenario())
    assert all(p.closed for p in providers)
