"""The gateway's settings as plain frozen values.

The application maps its own Settings onto these; nothing here reads the environment (the API key is looked
up by :mod:`.secrets` when the gateway is built). Every check runs at construction, so a bad configuration
fails at start-up with a :class:`~deskpilot.errors.ConfigError`, not on the first reply draft.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from deskpilot.errors import ConfigError

Period = Literal["hour", "day", "month"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(value: float, what: str) -> None:
    _require(math.isfinite(value) and value > 0, f"{what} must be a positive number, got {value!r}")


def _non_negative(value: float, what: str) -> None:
    _require(math.isfinite(value) and value >= 0, f"{what} must be zero or more, got {value!r}")


@dataclass(frozen=True)
class ProviderConfig:
    """One OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LM Studio, ...) and the model to ask.

    ``timeout_s`` bounds one HTTP call end to end (a slow drip cannot stretch it); ``deadline_s`` bounds the
    time spent on this provider, retries and back-off included. ``max_retries`` counts tries after the first.
    """

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    stream: bool = False
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    deadline_s: float = 60.0
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0  # a longer Retry-After moves on to the next provider instead of waiting
    prompt_price_per_1k: float = 0.0
    completion_price_per_1k: float = 0.0
    max_connections: int = 20
    max_keepalive_connections: int = 10
    max_response_bytes: int = 1_000_000  # a larger answer is MALFORMED: nobody drafts a megabyte reply
    stream_include_usage: bool = False  # ask for a final usage chunk; not every compatible server accepts it

    def __post_init__(self) -> None:
        _require(bool(self.name.strip()), "a provider needs a name")
        _require(
            self.base_url.startswith(("http://", "https://")),
            f"provider {self.name!r}: base_url must start with http:// or https://",
        )
        _require(bool(self.model.strip()), f"provider {self.name!r}: model must not be empty")
        _require(
            not (self.api_key_env and self.api_key_file),
            f"provider {self.name!r}: give api_key_env or api_key_file, not both",
        )
        for what in ("timeout_s", "connect_timeout_s", "deadline_s"):
            _positive(getattr(self, what), f"provider {self.name!r}: {what}")
        for what in (
            "backoff_base_s",
            "backoff_max_s",
            "max_retry_after_s",
            "prompt_price_per_1k",
            "completion_price_per_1k",
        ):
            _non_negative(getattr(self, what), f"provider {self.name!r}: {what}")
        _require(self.max_retries >= 0, f"provider {self.name!r}: max_retries must be zero or more")
        _require(self.max_connections >= 1, f"provider {self.name!r}: max_connections must be at least 1")
        _require(
            0 <= self.max_keepalive_connections <= self.max_connections,
            f"provider {self.name!r}: max_keepalive_connections must be between 0 and max_connections",
        )
        _require(self.max_response_bytes >= 1, f"provider {self.name!r}: max_response_bytes must be positive")


@dataclass(frozen=True)
class BreakerConfig:
    """Open after ``failure_threshold`` consecutive failures, or when at least ``min_calls`` calls in the last
    ``window_s`` failed at ``failure_rate`` or more (None: no rate rule); probe again after ``cooldown_s``."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    failure_rate: float | None = None
    window_s: float = 60.0
    min_calls: int = 10

    def __post_init__(self) -> None:
        _require(self.failure_threshold >= 1, "breaker failure_threshold must be at least 1")
        _non_negative(self.cooldown_s, "breaker cooldown_s")
        _positive(self.window_s, "breaker window_s")
        _require(self.min_calls >= 1, "breaker min_calls must be at least 1")
        if self.failure_rate is not None:
            _require(0 < self.failure_rate <= 1, "breaker failure_rate must be in (0, 1]")


@dataclass(frozen=True)
class CacheConfig:
    """A bounded LRU: at most ``max_entries`` answers and ``max_bytes`` of them, each kept ``ttl_s``."""

    enabled: bool = True
    max_entries: int = 1024
    max_bytes: int = 4 * 1024 * 1024
    ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        _require(self.max_entries >= 1, "cache max_entries must be at least 1")
        _require(self.max_bytes >= 1, "cache max_bytes must be at least 1")
        _positive(self.ttl_s, "cache ttl_s")


@dataclass(frozen=True)
class BudgetLimit:
    """What one tenant may spend per period. None on either side: that side is unlimited."""

    tokens: int | None = None
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None:
            _require(self.tokens >= 0, "a token budget must be zero or more")
        if self.cost_usd is not None:
            _non_negative(self.cost_usd, "a money budget")


UNLIMITED = BudgetLimit()


@dataclass(frozen=True)
class BudgetConfig:
    """``default`` applies to every tenant not in ``per_tenant``; a None limit means unlimited.

    The reservation before a call estimates the prompt conservatively: ``ceil(ascii chars / 3 + other
    UTF-8 bytes / 2)`` tokens per message, plus ``tokens_per_message`` (role, framing) and
    ``tokens_per_request``.
    """

    default: BudgetLimit | None = None
    per_tenant: Mapping[str, BudgetLimit | None] = field(default_factory=dict)
    period: Period = "day"
    tokens_per_message: int = 4
    tokens_per_request: int = 3

    def __post_init__(self) -> None:
        _require(self.period in ("hour", "day", "month"), f"unknown budget period {self.period!r}")
        _require(self.tokens_per_message >= 0, "tokens_per_message must be zero or more")
        _require(self.tokens_per_request >= 0, "tokens_per_request must be zero or more")

    def limit_for(self, tenant: str) -> BudgetLimit:
        limit = self.per_tenant.get(tenant, self.default)
        return UNLIMITED if limit is None else limit


@dataclass(frozen=True)
class GatewayConfig:
    """The fallback chain, tried in order, and the parts around it. ``deadline_s`` bounds a whole
    :meth:`Gateway.complete` across every provider (None: only each provider's own deadline)."""

    providers: tuple[ProviderConfig, ...]
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        _require(bool(self.providers), "the gateway needs at least one provider")
        names = [p.name for p in self.providers]
        _require(len(set(names)) == len(names), f"provider names must be unique, got {names}")
        if self.deadline_s is not None:
            _positive(self.deadline_s, "gateway deadline_s")
