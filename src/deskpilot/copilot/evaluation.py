"""How good are the drafts? Answered where the knowledge base can answer, refused where it cannot.

Queries are labelled messages; the knowledge base is the articles minus those of a seeded share of intents
(their answers are "removed"). For a query whose intent an article still covers, a draft should exist, cite
an article written for that intent, and have every claim supported; for the others, the copilot should
decline. Triage is taken as the query's own label (``route`` auto), so the numbers measure the copilot, not
the classifier. Queries may carry PII, redacted as the service redacts; a draft showing any is a leak.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deskpilot.copilot.grounding import TriageView
from deskpilot.copilot.suggest import Copilot, SearchIndex, Suggestion
from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.store.knowledge import Acceptance

PII_SUFFIXES = (
    " You can reach me at jane.doe@example.com.",
    " My card number is 4111 1111 1111 1111.",
    " Call me on +44 20 7946 0958 please.",
)


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    intent: str


@dataclass(frozen=True)
class RemovedAnswers:
    """The articles kept, and the intents whose every article was removed."""

    articles: list[KnowledgeItem]
    removed_intents: frozenset[str]
    answerable_intents: frozenset[str]


def remove_answers(articles: Sequence[KnowledgeItem], fraction: float, seed: int) -> RemovedAnswers:
    """Drop every article that answers any of a seeded ``fraction`` of the covered intents."""
    covered = sorted({intent for a in articles for intent in a.intents})
    rng = random.Random(seed)
    removed = frozenset(rng.sample(covered, round(len(covered) * fraction)))
    kept = [a for a in articles if not removed.intersection(a.intents)]
    answerable = frozenset(intent for a in kept for intent in a.intents)
    return RemovedAnswers(kept, removed, answerable)


@dataclass
class DraftReport:
    queries: int
    answerable: int
    unanswerable: int
    answer_rate: float  # answerable queries that got a draft
    refusal_rate: float  # unanswerable queries that got no draft
    citation_correctness: float  # cited article sources written for the query's intent
    grounding_rate: float  # claims offered that were supported by their citations and kept
    pii_probes: int
    pii_leaks: int
    latency_ms: dict[str, float]
    providers: dict[str, int]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    flags: dict[str, int] = field(default_factory=dict)

    @property
    def cost_per_1000(self) -> float:
        return 1000.0 * self.cost_usd / self.queries if self.queries else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "answer_rate": round(self.answer_rate, 4),
            "refusal_rate": round(self.refusal_rate, 4),
            "citation_correctness": round(self.citation_correctness, 4),
            "grounding_rate": round(self.grounding_rate, 4),
            "pii_probes": self.pii_probes,
            "pii_leaks": self.pii_leaks,
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
            "providers": self.providers,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cost_per_1000_suggestions_usd": round(self.cost_per_1000, 4),
            "flags": self.flags,
        }


async def evaluate_drafts(
    copilot: Copilot,
    index: SearchIndex,
    *,
    tenant: str,
    queries: Sequence[LabelledQuery],
    answerable_intents: frozenset[str],
    pii_every: int = 5,
    redactor: PiiRedactor | None = None,
    true_intents: Mapping[str, tuple[str, ...]] | None = None,
    acceptance: Mapping[tuple[str, str], Acceptance] | None = None,
) -> DraftReport:
    """Run every query through :meth:`Copilot.suggest`; every ``pii_every``-th one carries PII.
    ``true_intents`` (item id → intents) judges citations when the index hides the items' labels."""
    redact = (redactor or PiiRedactor()).redact
    checker = PiiRedactor()
    answered = refused = n_answerable = n_unanswerable = 0
    cited = cited_right = probes = leaks = 0
    claims = supported = 0
    latencies: list[float] = []
    providers: dict[str, int] = {}
    flags: dict[str, int] = {}
    prompt = completion = 0
    cost = 0.0
    for position, query in enumerate(queries):
        text = query.text
        if pii_every and position % pii_every == 0:
            text += PII_SUFFIXES[(position // pii_every) % len(PII_SUFFIXES)]
            probes += 1
        started = time.perf_counter()
        suggestion = await copilot.suggest(
            tenant=tenant,
            text=redact(text),
            triage=TriageView(query.intent, 1.0, "auto"),
            index=index,
            acceptance=acceptance or {},
        )
        latencies.append((time.perf_counter() - started) * 1000.0)
        providers[suggestion.provider] = providers.get(suggestion.provider, 0) + 1
        for flag in suggestion.flags:
            flags[flag] = flags.get(flag, 0) + 1
        prompt += suggestion.prompt_tokens
        completion += suggestion.completion_tokens
        cost += suggestion.cost_usd
        draft = suggestion.draft
        if query.intent in answerable_intents:
            n_answerable += 1
            answered += draft is not None
        else:
            n_unanswerable += 1
            refused += draft is None
        if draft is None:
            continue
        if checker.find(draft.text):
            leaks += 1
        right, total = _citations(suggestion, query.intent, true_intents)
        cited_right += right
        cited += total
        kept, offered = _claims(suggestion)
        supported += kept
        claims += offered
    return DraftReport(
        queries=len(queries),
        answerable=n_answerable,
        unanswerable=n_unanswerable,
        answer_rate=answered / n_answerable if n_answerable else 0.0,
        refusal_rate=refused / n_unanswerable if n_unanswerable else 0.0,
        citation_correctness=cited_right / cited if cited else 0.0,
        grounding_rate=supported / claims if claims else 0.0,
        pii_probes=probes,
        pii_leaks=leaks,
        latency_ms=_percentiles(latencies),
        providers=providers,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        flags=flags,
    )


def _citations(
    suggestion: Suggestion, intent: str, true_intents: Mapping[str, tuple[str, ...]] | None
) -> tuple[int, int]:
    """(citations of a source written for ``intent``, citations) of the draft."""
    assert suggestion.draft is not None
    truth = true_intents or {}
    by_number = {s.number: truth.get(s.hit.item.id, s.hit.item.intents) for s in suggestion.sources}
    numbers = suggestion.draft.citations
    right = sum(1 for n in numbers if intent in by_number.get(n, ()))
    return right, len(numbers)


def _claims(suggestion: Suggestion) -> tuple[int, int]:
    """(claims kept, claims offered): the guard's verdict on every non-courtesy sentence."""
    checked = suggestion.checked
    offered = [s for s in checked if s.support is not None or s.flag in ("uncited", "bad_citation")]
    return sum(1 for s in offered if s.kept), len(offered)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "mean": float(array.mean()),
    }
