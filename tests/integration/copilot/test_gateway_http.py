"""The gateway against a real HTTP server that misbehaves on cue (tests/support/fake_openai.py).

Every fault a real provider produces crosses a socket here: slow starts and slow drips, 429 with Retry-After,
5xx, resets, streams cut short, ``length`` finishes, bodies that are not JSON. Timeouts are tenths of a second
and back-off is zero, so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from deskpilot.copilot.gateway.base import ChatMessage, ChatRequest, Completion, FailureKind
from deskpilot.copilot.gateway.budget import Budgets, InMemoryBudgetLedger
from deskpilot.copilot.gateway.config import (
    BreakerConfig,
    BudgetConfig,
    BudgetLimit,
    CacheConfig,
    GatewayConfig,
    ProviderConfig,
)
from deskpilot.copilot.gateway.factory import build_gateway
from deskpilot.copilot.gateway.router import Gateway, GatewayExhausted
from tests.support.fake_openai import (
    Answer,
    FakeOpenAI,
    Reset,
    Status,
    drip,
    length,
    malformed,
    missing_fields,
    rate_limited,
    server_error,
    slow,
    truncated,
)

KEY = "sk-integration-5ecr3t-key"
ENV = {"LLM_KEY": KEY, "FALLBACK_KEY": KEY + "-2"}
PROMPT = "Where is my card? It was due on Monday."
T = TypeVar("T")


@pytest.fixture
def primary() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fallback() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Answer("From the fallback.")) as server:
        yield server


def provider(server: FakeOpenAI, name: str = "primary", **overrides: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "name": name,
        "base_url": server.base_url,
        "model": f"{name}-model",
        "api_key_env": "LLM_KEY" if name == "primary" else "FALLBACK_KEY",
        "timeout_s": 0.4,
        "connect_timeout_s": 0.4,
        "deadline_s": 5.0,
        "max_retries": 2,
        "backoff_base_s": 0.0,
        "backoff_max_s": 0.0,
        "max_retry_after_s": 1.0,
    }
    return ProviderConfig(**{**values, **overrides})


def chain(*providers: ProviderConfig, **overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {"cache": CacheConfig(enabled=False)}
    return GatewayConfig(providers=providers, **{**values, **overrides})


def request(text: str = PROMPT, **overrides: Any) -> ChatRequest:
    return ChatRequest((ChatMessage("user", text),), **{"tenant": "acme", "max_tokens": 60, **overrides})


def run(config: GatewayConfig, scenario: Callable[[Gateway], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        async with build_gateway(config, environ=ENV, **kwargs) as gateway:
            return await scenario(gateway)

    return asyncio.run(main())


def complete_once(config: GatewayConfig, req: ChatRequest | None = None) -> Completion:
    return run(config, lambda gw: gw.complete(req or request()))


def exhausted(config: GatewayConfig) -> GatewayExhausted:
    with pytest.raises(GatewayExhausted) as info:
        complete_once(config)
    return info.value


@pytest.mark.parametrize("stream", [False, True])
def test_a_normal_answer_and_what_was_sent(primary: FakeOpenAI, stream: bool) -> None:
    completion = complete_once(chain(provider(primary, stream=stream)))
    assert completion.text == Answer.text
    assert (completion.provider, completion.model, completion.finish_reason) == (
        "primary",
        "primary-model",
        "stop",
    )
    assert completion.usage_estimated is stream, "the fake sends stream usage only when asked"
    (sent,) = primary.chat_requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "primary-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 60,
        "temperature": 0.0,
        "stream": stream,
    }


def test_a_stream_with_usage_reports_the_servers_count_and_prices_it(primary: FakeOpenAI) -> None:
    config = chain(
        provider(
            primary,
            stream=True,
            stream_include_usage=True,
            prompt_price_per_1k=1.0,
            completion_price_per_1k=3.0,
        )
    )
    completion = complete_once(config)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage_estimated) == (
        21,
        12,
        False,
    )
    assert completion.cost_usd == pytest.approx((21 * 1.0 + 12 * 3.0) / 1000)


@pytest.mark.parametrize(
    ("step", "stream"),
    [(slow(1.5), False), (slow(1.5), True), (drip(0.15), False), (drip(0.15), True)],
    ids=["slow-start", "slow-start-stream", "slow-drip", "slow-drip-stream"],
)
def test_slow_answers_time_out_then_fall_back(
    primary: FakeOpenAI, fallback: FakeOpenAI, step: Answer, stream: bool
) -> None:
    """A drip sends a piece every 0.15 s, well within httpx's 0.4 s read timeout, for well over a second:
    only the whole-call bound stops it."""
    primary.enqueue(step)
    config = chain(provider(primary, max_retries=0, stream=stream), provider(fallback, "fallback"))

    async def scenario(gateway: Gateway) -> tuple[Completion, float, dict[Any, int]]:
        started = time.monotonic()
        completion = await gateway.complete(request())
        return completion, time.monotonic() - started, dict(gateway.stats.failures)

    completion, elapsed, failures = run(config, scenario)
    assert completion.text == "From the fallback."
    assert failures == {("primary", FailureKind.TIMEOUT): 1}
    assert elapsed < 1.2
    assert len(primary.chat_requests) == 1


def test_429_waits_its_retry_after_then_succeeds(primary: FakeOpenAI) -> None:
    primary.enqueue(rate_limited("0.3"))
    assert complete_once(chain(provider(primary))).text == Answer.text
    first, second = primary.chat_requests
    assert second.received_at - first.received_at >= 0.29


def test_a_retry_after_longer_than_we_wait_moves_on_at_once(
    primary: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    primary.enqueue(rate_limited("30"))
    started = time.monotonic()
    completion = complete_once(chain(provider(primary), provider(fallback, "fallback")))
    assert completion.provider == "fallback"
    assert len(primary.chat_requests) == 1
    assert time.monotonic() - started < 1.0


def test_server_errors_are_retried_then_succeed(primary: FakeOpenAI) -> None:
    primary.enqueue(server_error(500), server_error(503))
    assert complete_once(chain(provider(primary))).provider == "primary"
    assert len(primary.chat_requests) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_a_reset_connection_is_retried(primary: FakeOpenAI, stream: bool) -> None:
    primary.enqueue(Reset(), Reset(after_chunks=2) if stream else Reset())
    assert complete_once(chain(provider(primary, stream=stream))).text == Answer.text
    assert len(primary.chat_requests) == 3


@pytest.mark.parametrize(
    ("step", "stream", "kind"),
    [
        (truncated(), True, FailureKind.TRUNCATED),
        (length(), True, FailureKind.TRUNCATED),
        (length(), False, FailureKind.TRUNCATED),
        (malformed(), False, FailureKind.MALFORMED),
        (missing_fields(), False, FailureKind.MALFORMED),
        (Answer(finish_reason=None), True, FailureKind.MALFORMED),
        (Status(400), False, FailureKind.REFUSED),
    ],
    ids=["cut-stream", "length-stream", "length", "not-json", "no-choices", "no-finish-reason", "400"],
)
def test_incomplete_answers_go_to_the_next_provider_without_a_retry(
    primary: FakeOpenAI, fallback: FakeOpenAI, step: Any, stream: bool, kind: FailureKind
) -> None:
    primary.enqueue(step)
    events: list[Any] = []

    async def scenario(gateway: Gateway) -> Completion:
        completion = await gateway.complete(request())
        events.append(dict(gateway.stats.failures))
        return completion

    completion = run(
        chain(provider(primary, stream=stream), provider(fallback, "fallback", stream=stream)), scenario
    )
    assert completion.text == "From the fallback."
    assert len(primary.chat_requests) == 1, "no retry on the same provider"
    assert events == [{("primary", kind): 1}]


def test_every_provider_failing_raises_with_every_attempt(primary: FakeOpenAI, fallback: FakeOpenAI) -> None:
    primary.default = server_error(502)
    fallback.default = truncated()
    error = exhausted(chain(provider(primary, max_retries=1), provider(fallback, "fallback", stream=True)))
    assert [(a.provider, a.kind, a.attempt) for a in error.attempts] == [
        ("primary", FailureKind.SERVER_ERROR, 1),
        ("primary", FailureKind.SERVER_ERROR, 2),
        ("fallback", FailureKind.TRUNCATED, 1),
    ]
    assert all(a.elapsed_s < 1.0 for a in error.attempts)


def test_a_small_budget_allows_n_calls_then_no_request_reaches_the_server(primary: FakeOpenAI) -> None:
    ledger = InMemoryBudgetLedger()
    worst = Budgets(BudgetConfig(), ledger).worst_case(request(), prompt_per_1k=0, completion_per_1k=0)
    actual = 21 + 12  # what the fake reports per answer
    limit = BudgetLimit(tokens=2 * actual + worst.total_tokens)  # room for exactly three calls
    config = chain(provider(primary), budget=BudgetConfig(default=limit))

    async def scenario(gateway: Gateway) -> list[Completion | BaseException]:
        results: list[Completion | BaseException] = []
        for _ in range(6):
            try:
                results.append(await gateway.complete(request()))
            except GatewayExhausted as exc:
                results.append(exc)
        return results

    results = run(config, scenario, ledger=ledger)
    assert [type(r).__name__ for r in results] == ["Completion"] * 3 + ["GatewayExhausted"] * 3
    assert all(
        isinstance(r, GatewayExhausted) and r.attempts[0].kind is FailureKind.BUDGET for r in results[3:]
    )
    assert len(primary.chat_requests) == 3
    other_tenant = run(config, lambda gw: gw.complete(request(tenant="globex")), ledger=ledger)
    assert other_tenant.provider == "primary"


def test_concurrent_calls_cannot_overrun_a_budget(primary: FakeOpenAI) -> None:
    primary.default = Answer(delay_s=0.05)
    ledger = InMemoryBudgetLedger()
    worst = Budgets(BudgetConfig(), ledger).worst_case(request(), prompt_per_1k=0, completion_per_1k=0)
    config = chain(provider(primary), budget=BudgetConfig(default=BudgetLimit(tokens=4 * worst.total_tokens)))

    async def burst(gateway: Gateway) -> list[Completion | BaseException]:
        calls = (gateway.complete(request()) for _ in range(20))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = run(config, burst, ledger=ledger)
    assert sum(isinstance(r, Completion) for r in results) == 4
    assert sum(isinstance(r, GatewayExhausted) for r in results) == 16
    assert len(primary.chat_requests) == 4


def test_the_breaker_opens_and_stops_calls(primary: FakeOpenAI, fallback: FakeOpenAI) -> None:
    primary.default = server_error(500)
    config = chain(
        provider(primary, max_retries=0),
        provider(fallback, "fallback"),
        breaker=BreakerConfig(failure_threshold=3, cooldown_s=60),
    )

    async def scenario(gateway: Gateway) -> list[str]:
        return [(await gateway.complete(request())).provider for _ in range(6)]

    assert run(config, scenario) == ["fallback"] * 6
    assert len(primary.chat_requests) == 3
    assert len(fallback.chat_requests) == 6


def test_a_cache_hit_makes_no_second_request(primary: FakeOpenAI) -> None:
    config = chain(provider(primary), cache=CacheConfig())

    async def scenario(gateway: Gateway) -> tuple[Completion, Completion, Completion]:
        first = await gateway.complete(request())
        again = await gateway.complete(request())
        other = await gateway.complete(request(cache_scope="kb-v2"))
        return first, again, other

    first, again, other = run(config, scenario)
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert again.text == first.text
    assert len(primary.chat_requests) == 2


def test_the_key_and_the_prompt_never_reach_errors_or_logs(
    primary: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": {"message": f"Incorrect API key {KEY} for: {PROMPT}", "code": "invalid_api_key"}}
    primary.default = Status(401, body=echo)
    caplog.set_level(logging.DEBUG)
    error = exhausted(chain(provider(primary)))
    assert primary.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"
    shown = " ".join([str(error), repr(error), repr(error.details), *(repr(a) for a in error.attempts)])
    assert "invalid_api_key" in shown
    for secret in (KEY, PROMPT):
        assert secret not in shown
        assert secret not in caplog.text
        assert all(secret not in repr(vars(r)) for r in caplog.records)
    assert error.__cause__ is None


def test_a_provider_that_refuses_connections_is_a_connection_failure() -> None:
    with FakeOpenAI() as server:
        config = chain(provider(server, max_retries=1))
    error = exhausted(config)  # the server is gone: nothing listens on its port
    assert [a.kind for a in error.attempts] == [FailureKind.CONNECTION] * 2


def test_the_fake_server_stops_without_leaving_threads() -> None:
    before = {t.ident for t in threading.enumerate()}
    with FakeOpenAI(slow(5.0)) as server, pytest.raises(GatewayExhausted):
        complete_once(chain(provider(server, max_retries=0, timeout_s=0.1)))
    leftover = [t for t in threading.enumerate() if t.ident not in before]
    assert leftover == []
