"""Builds a :class:`Gateway` from a :class:`GatewayConfig`: the composition root of the gateway.

Kept apart from :mod:`.config` so the settings stay plain values that every part can import without cycles.
This is the one place that reads API keys (through :func:`.secrets.load_secret`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from deskpilot.copilot.gateway.breaker import CircuitBreaker
from deskpilot.copilot.gateway.budget import BudgetLedger, Budgets, InMemoryBudgetLedger
from deskpilot.copilot.gateway.cache import ResponseCache
from deskpilot.copilot.gateway.config import GatewayConfig, ProviderConfig
from deskpilot.copilot.gateway.openai import OpenAICompatibleProvider
from deskpilot.copilot.gateway.retry import RetryPolicy
from deskpilot.copilot.gateway.router import Gateway, Route
from deskpilot.copilot.gateway.secrets import load_secret
from deskpilot.copilot.gateway.stats import GatewayObserver


def retry_policy(config: ProviderConfig) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=config.max_retries + 1,
        backoff_base_s=config.backoff_base_s,
        backoff_max_s=config.backoff_max_s,
        max_retry_after_s=config.max_retry_after_s,
    )


def build_gateway(
    config: GatewayConfig,
    ledger: BudgetLedger | None = None,
    *,
    observers: Sequence[GatewayObserver] = (),
    environ: Mapping[str, str] | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Gateway:
    """The gateway ``config`` describes. ``ledger`` defaults to one in memory (one process, forgotten on
    restart); ``environ`` replaces ``os.environ`` for key lookups and ``transports`` (by provider name) the
    network, both for tests. Raises ConfigError for a missing key before any client is opened."""
    keys = {
        p.name: load_secret(env=p.api_key_env, file=p.api_key_file, environ=environ) for p in config.providers
    }
    routes = [
        Route(
            provider=OpenAICompatibleProvider(
                p, api_key=keys[p.name], transport=(transports or {}).get(p.name)
            ),
            retry=retry_policy(p),
            breaker=CircuitBreaker(config.breaker),
            deadline_s=p.deadline_s,
            prompt_price_per_1k=p.prompt_price_per_1k,
            completion_price_per_1k=p.completion_price_per_1k,
        )
        for p in config.providers
    ]
    return Gateway(
        routes,
        budgets=Budgets(config.budget, ledger if ledger is not None else InMemoryBudgetLedger()),
        cache=ResponseCache(config.cache) if config.cache.enabled else None,
        observers=observers,
        deadline_s=config.deadline_s,
    )
