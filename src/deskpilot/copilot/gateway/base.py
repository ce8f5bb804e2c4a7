"""The gateway's vocabulary: a chat request, its completion, why a call failed, and the provider interface.

Only reply drafts go through the gateway; triage never does. A provider either returns a complete, well-formed
:class:`Completion` or raises :class:`ProviderError`: a truncated stream, a ``finish_reason`` of ``length``,
an empty or malformed body are failures, never a partial draft (an HTTP 200 is not success by itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


class FailureKind(StrEnum):
    """Why a provider call failed. ``retryable`` kinds are tried again (with backoff) on the same provider."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"  # HTTP 429
    SERVER_ERROR = "server_error"  # HTTP 5xx
    TRUNCATED = "truncated"  # finish_reason "length", or a stream that ended without its final chunk
    MALFORMED = "malformed"  # not JSON, or JSON without the fields the protocol promises
    REFUSED = "refused"  # any other 4xx: our request is wrong (bad model, bad key); retrying cannot help
    BUDGET = "budget"  # the tenant's token or money budget cannot cover the call's reservation
    CIRCUIT_OPEN = "circuit_open"  # the provider failed repeatedly and is cooling down

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {FailureKind.TIMEOUT, FailureKind.CONNECTION, FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR}
)


@dataclass(frozen=True)
class Usage:
    """Tokens a call consumed and what they cost. ``estimated`` when the provider did not report them."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ProviderError(Exception):
    """One failed call. The message never contains the API key or the prompt.

    ``usage`` is set when the failed call still consumed tokens (a ``length`` finish, a stream cut short), so
    the budget charges what was spent instead of releasing it."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        retry_after_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.usage = usage

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """What to ask. ``cache_scope`` names what else the answer depends on (the prompt version and the ids and
    digests of the sources), so two requests with the same messages but different sources never share a
    cached answer. ``tenant`` is whose budget pays."""

    messages: tuple[ChatMessage, ...]
    tenant: str
    max_tokens: int = 400
    temperature: float = 0.0
    cache_scope: str = ""


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str  # the configured provider's name, e.g. "openai" or "openai-fallback"
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str = "stop"
    cached: bool = False
    usage_estimated: bool = False  # the provider reported no usage (common in streams): tokens are estimates

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatProvider(Protocol):
    """One OpenAI-compatible endpoint and model. Implementations raise :class:`ProviderError` on failure."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...
