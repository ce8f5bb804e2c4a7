"""Prometheus metrics of the copilot, on the service's registry (the names are a contract with the alerts)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from deskpilot.copilot.gateway.base import Completion, FailureKind
from deskpilot.service.metrics import LATENCY_BUCKETS

VERDICTS = ("accepted", "edited", "rejected")
OUTCOMES = ("draft", "no_draft")
GUARD_FLAGS = (
    "unsupported",
    "uncited",
    "bad_citation",
    "prompt_leak",
    "pii_redacted",
    "truncated",
    "no_supported_claim",
    "no_answer",
)  # the flags the output guard sets (besides blocked_topic:NAME, named by the template)


class CopilotMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.similar_latency = Histogram(
            "deskpilot_copilot_similar_seconds",
            "Time to retrieve similar items (redaction, encoding, search, fusion).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.suggest_latency = Histogram(
            "deskpilot_copilot_suggest_seconds",
            "Time to build a suggestion after triage, by the provider whose draft was kept.",
            ["provider"],
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0),
            registry=r,
        )
        self.suggestions = Counter(
            "deskpilot_copilot_suggestions_total",
            "Suggestions by the provider of the draft and whether there was a draft.",
            ["provider", "outcome"],
            registry=r,
        )
        self.llm_calls = Counter(
            "deskpilot_copilot_llm_calls_total",
            "HTTP calls to LLM providers (each try, retries included), by provider.",
            ["provider"],
            registry=r,
        )
        self.llm_failures = Counter(
            "deskpilot_copilot_llm_failures_total",
            "Failed LLM tries and skipped providers (budget, open circuit), by provider and failure kind.",
            ["provider", "kind"],
            registry=r,
        )
        self.llm_cache_hits = Counter(
            "deskpilot_copilot_llm_cache_hits_total",
            "Drafts answered from the gateway's response cache, by provider.",
            ["provider"],
            registry=r,
        )
        self.llm_tokens = Counter(
            "deskpilot_copilot_llm_tokens_total",
            "LLM tokens used, by provider and direction (prompt, completion).",
            ["provider", "direction"],
            registry=r,
        )
        self.llm_cost = Counter(
            "deskpilot_copilot_llm_cost_usd_total",
            "LLM spend in US dollars, by provider.",
            ["provider"],
            registry=r,
        )
        self.guard_flags = Counter(
            "deskpilot_copilot_guard_flags_total",
            "Sentences or drafts the output guard changed, by flag (unsupported, pii_redacted, ...).",
            ["flag"],
            registry=r,
        )
        self.feedback = Counter(
            "deskpilot_copilot_feedback_total", "Agents' verdicts on drafts.", ["verdict"], registry=r
        )
        for verdict in VERDICTS:
            self.feedback.labels(verdict)
        for outcome in OUTCOMES:
            self.suggestions.labels("extractive", outcome)
        for flag in GUARD_FLAGS:
            self.guard_flags.labels(flag)
        self.record_failures = Counter(
            "deskpilot_copilot_record_failures_total",
            "Suggestions that could not be written to the store (the agent still got them).",
            registry=r,
        )
        self.record_failures.inc(0)
        self.index_version = Gauge(
            "deskpilot_copilot_index_version",
            "Version of the retrieval index this process serves (0: none loaded).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_load_failures = Counter(
            "deskpilot_copilot_index_load_failures_total",
            "Retrieval index versions that failed to load (the previous one keeps serving).",
            registry=r,
        )
        self.index_load_failures.inc(0)


class GatewayMetrics:
    """The model gateway's events as Prometheus samples (a ``GatewayObserver``): every try, retried or not."""

    def __init__(self, metrics: CopilotMetrics, providers: Sequence[str] = ()) -> None:
        self.metrics = metrics
        for provider in providers:  # every series an alert reads exists from the start, at 0
            metrics.llm_calls.labels(provider)
            metrics.llm_cache_hits.labels(provider)
            metrics.llm_cost.labels(provider)
            metrics.suggestions.labels(provider, "draft")
            for kind in FailureKind:
                metrics.llm_failures.labels(provider, kind.value)
            for direction in ("prompt", "completion"):
                metrics.llm_tokens.labels(provider, direction)

    def on_request(self) -> None:
        return None

    def on_cache_hit(self, provider: str) -> None:
        self.metrics.llm_cache_hits.labels(provider).inc()

    def on_call(self, provider: str) -> None:
        self.metrics.llm_calls.labels(provider).inc()

    def on_success(self, provider: str, completion: Completion, elapsed_s: float) -> None:
        m = self.metrics
        m.llm_tokens.labels(provider, "prompt").inc(completion.prompt_tokens)
        m.llm_tokens.labels(provider, "completion").inc(completion.completion_tokens)
        m.llm_cost.labels(provider).inc(completion.cost_usd)

    def on_failure(self, provider: str, kind: FailureKind) -> None:
        self.metrics.llm_failures.labels(provider, kind.value).inc()

    def on_fallback(self, provider: str) -> None:
        return None

    def on_exhausted(self) -> None:
        return None
