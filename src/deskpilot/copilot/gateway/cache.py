"""A bounded response cache: LRU by entries and bytes, each answer kept for a TTL.

Memory is bounded by construction (``max_entries`` and ``max_bytes``, checked on every put), so a busy process
cannot grow it without end. The key is a SHA-256 over everything the answer depends on: the provider and
model, the tenant (tenants never share answers, even for identical prompts), the messages, ``max_tokens``,
``temperature`` and ``cache_scope``. A hit is free: no call, no budget, ``cost_usd`` 0. Only complete answers
are put here; the gateway never caches a failure.

Not thread-safe: the gateway uses it from one event loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from deskpilot.copilot.gateway.base import ChatRequest, Completion
from deskpilot.copilot.gateway.config import CacheConfig
from deskpilot.copilot.gateway.retry import Clock

_ENTRY_OVERHEAD_BYTES = 256  # the Completion object, its strings' headers and the dict slot


def cache_key(provider: str, model: str, request: ChatRequest) -> str:
    payload = {
        "provider": provider,
        "model": model,
        "tenant": request.tenant,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "scope": request.cache_scope,
    }
    encoded = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    completion: Completion
    expires_at: float
    size: int


def _size(key: str, completion: Completion) -> int:
    text_bytes = len(completion.text.encode("utf-8"))
    return len(key) + text_bytes + len(completion.provider) + len(completion.model) + _ENTRY_OVERHEAD_BYTES


class ResponseCache:
    def __init__(self, config: CacheConfig | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or CacheConfig()
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Completion | None:
        """The cached answer, marked ``cached`` and free, or None (absent, expired or cache disabled)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return replace(entry.completion, cached=True, cost_usd=0.0)

    def put(self, key: str, completion: Completion) -> None:
        if not self.config.enabled:
            return
        size = _size(key, completion)
        if size > self.config.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(
            replace(completion, cached=False), self._clock() + self.config.ttl_s, size
        )
        self._bytes += size
        self._evict()

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            self._drop(key)
        while len(self._entries) > self.config.max_entries or self._bytes > self.config.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size
