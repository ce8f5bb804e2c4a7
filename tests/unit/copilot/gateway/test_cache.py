"""The response cache: keyed on all the answer depends on; free hits; bounded by entries, bytes and TTL."""

from __future__ import annotations

from dataclasses import replace

from deskpilot.copilot.gateway.base import ChatMessage, ChatRequest, Completion
from deskpilot.copilot.gateway.cache import ResponseCache, cache_key
from deskpilot.copilot.gateway.config import CacheConfig
from tests.unit.copilot.gateway.clocks import FakeClock

REQUEST = ChatRequest(
    (ChatMessage("user", "Where is my card?"),), tenant="acme", cache_scope="prompt-v1:kb-7"
)


def completion(text: str = "On its way.") -> Completion:
    return Completion(text, "openai", "gpt", prompt_tokens=10, completion_tokens=4, cost_usd=0.02)


def test_the_key_covers_everything_the_answer_depends_on() -> None:
    base = cache_key("openai", "gpt", REQUEST)
    assert base == cache_key("openai", "gpt", replace(REQUEST))
    variants = [
        cache_key("fallback", "gpt", REQUEST),
        cache_key("openai", "gpt-mini", REQUEST),
        cache_key("openai", "gpt", replace(REQUEST, tenant="globex")),
        cache_key("openai", "gpt", replace(REQUEST, cache_scope="prompt-v2:kb-7")),
        cache_key("openai", "gpt", replace(REQUEST, max_tokens=401)),
        cache_key("openai", "gpt", replace(REQUEST, temperature=0.5)),
        cache_key("openai", "gpt", replace(REQUEST, messages=(ChatMessage("system", "Where is my card?"),))),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert len(base) == 64


def test_a_hit_is_marked_cached_and_free(clock: FakeClock) -> None:
    cache = ResponseCache(clock=clock)
    cache.put("k", completion())
    hit = cache.get("k")
    assert hit == replace(completion(), cached=True, cost_usd=0.0)
    assert cache.get("other") is None


def test_entries_expire(clock: FakeClock) -> None:
    cache = ResponseCache(CacheConfig(ttl_s=60), clock=clock)
    cache.put("k", completion())
    clock.advance(59.9)
    assert cache.get("k") is not None
    clock.advance(0.1)
    assert cache.get("k") is None
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_least_recently_used_goes_first(clock: FakeClock) -> None:
    cache = ResponseCache(CacheConfig(max_entries=2), clock=clock)
    cache.put("a", completion())
    cache.put("b", completion())
    assert cache.get("a") is not None
    cache.put("c", completion())
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None


def test_memory_stays_bounded_under_any_load(clock: FakeClock) -> None:
    config = CacheConfig(max_entries=50, max_bytes=20_000, ttl_s=3600)
    cache = ResponseCache(config, clock=clock)
    for i in range(5000):
        cache.put(f"key-{i}", completion("é" * (i % 700)))
        assert len(cache) <= 50
        assert cache.size_bytes <= 20_000
    assert cache.get("key-4999") is not None
    assert cache.size_bytes == sum(e.size for e in cache._entries.values())


def test_an_answer_bigger_than_the_cache_is_not_kept(clock: FakeClock) -> None:
    cache = ResponseCache(CacheConfig(max_bytes=1000), clock=clock)
    cache.put("small", completion())
    cache.put("big", completion("x" * 2000))
    assert cache.get("big") is None
    assert cache.get("small") is not None


def test_a_disabled_cache_keeps_nothing(clock: FakeClock) -> None:
    cache = ResponseCache(CacheConfig(enabled=False), clock=clock)
    cache.put("k", completion())
    assert cache.get("k") is None
