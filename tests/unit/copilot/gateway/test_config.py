"""Configuration is checked when it is built, and build_gateway wires a chain from it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskpilot.copilot.gateway.base import ChatMessage, ChatRequest
from deskpilot.copilot.gateway.budget import InMemoryBudgetLedger
from deskpilot.copilot.gateway.config import (
    BreakerConfig,
    BudgetConfig,
    BudgetLimit,
    CacheConfig,
    GatewayConfig,
    ProviderConfig,
)
from deskpilot.copilot.gateway.factory import build_gateway
from deskpilot.errors import ConfigError


def provider(name: str = "primary", **overrides: Any) -> ProviderConfig:
    return ProviderConfig(**{"name": name, "base_url": "http://127.0.0.1:9/v1", "model": "m", **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": "ftp://x"},
        {"model": " "},
        {"api_key_env": "A", "api_key_file": "/k"},
        {"timeout_s": 0},
        {"deadline_s": float("inf")},
        {"max_retries": -1},
        {"prompt_price_per_1k": -0.1},
        {"max_keepalive_connections": 50, "max_connections": 10},
    ],
)
def test_bad_provider_settings_fail_at_construction(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        provider(**overrides)


def test_bad_gateway_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        GatewayConfig(providers=())
    with pytest.raises(ConfigError, match="unique"):
        GatewayConfig(providers=(provider("a"), provider("a")))
    with pytest.raises(ConfigError):
        BreakerConfig(failure_rate=1.5)
    with pytest.raises(ConfigError):
        CacheConfig(max_entries=0)
    with pytest.raises(ConfigError):
        BudgetLimit(tokens=-1)
    with pytest.raises(ConfigError):
        BudgetConfig(period="week")  # type: ignore[arg-type]


def test_build_gateway_reads_keys_and_wires_the_chain(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n", encoding="utf-8")
    seen: dict[str, str] = {}

    def transport(name: str) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            seen[name] = request.headers["authorization"]
            return httpx.Response(503 if name == "primary" else 200, json=_BODY)

        return httpx.MockTransport(handler)

    config = GatewayConfig(
        providers=(
            provider("primary", api_key_env="PRIMARY_KEY", max_retries=0),
            provider("fallback", api_key_file=str(key_file)),
        ),
        budget=BudgetConfig(default=BudgetLimit(tokens=10_000)),
    )
    ledger = InMemoryBudgetLedger()
    gateway = build_gateway(
        config,
        ledger,
        environ={"PRIMARY_KEY": "sk-from-env"},
        transports={"primary": transport("primary"), "fallback": transport("fallback")},
    )

    async def scenario() -> str:
        async with gateway:
            request = ChatRequest((ChatMessage("user", "hi"),), tenant="acme")
            return (await gateway.complete(request)).provider

    assert asyncio.run(scenario()) == "fallback"
    assert seen == {"primary": "Bearer sk-from-env", "fallback": "Bearer sk-from-file"}
    assert gateway.stats.fallbacks == 1
    assert [r.retry.max_attempts for r in gateway.routes] == [1, 3]
    assert gateway.budgets is not None
    assert gateway.budgets.ledger is ledger
    assert gateway.cache is not None


def test_a_missing_key_fails_before_any_client_is_opened() -> None:
    config = GatewayConfig(providers=(provider(api_key_env="NOPE"),))
    with pytest.raises(ConfigError, match="NOPE"):
        build_gateway(config, environ={})


_BODY = {"choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}]}
