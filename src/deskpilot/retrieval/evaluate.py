"""Does fusing help? Dense, lexical and hybrid search scored on labelled queries against labelled tickets.

A retrieved ticket is relevant when its intent is the query's: the question is whether the tickets an agent
is shown were about the same problem. Fusion parameters are chosen with :func:`tune_fusion` on queries
carved from the *indexed* side of a split, so the reported validation queries never steer a choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.data.splits import split_frame
from deskpilot.errors import UsageError
from deskpilot.retrieval.fusion import FusionParams
from deskpilot.retrieval.index import SEARCH_MODES, RetrievalIndex, SearchMode
from deskpilot.retrieval.items import Kind, KnowledgeItem
from deskpilot.retrieval.metrics import (
    METRIC_DEPTH,
    RETRIEVAL_METRICS,
    PairedDifference,
    paired_bootstrap,
    query_metrics,
    relevance_matrix,
)

TICKETS: tuple[Kind, ...] = ("ticket",)
DEFAULT_COMPARISONS: tuple[tuple[SearchMode, SearchMode], ...] = (("dense", "hybrid"), ("lexical", "hybrid"))


@dataclass(frozen=True)
class SystemScores:
    """One search mode's mean metrics, and the per-query values the paired tests use."""

    mode: str
    means: dict[str, float]
    per_query: dict[str, np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class Comparison:
    baseline: str
    challenger: str
    metric: str
    result: PairedDifference
    alpha: float

    @property
    def significant(self) -> bool:
        """The challenger is better at level ``alpha`` (one-sided)."""
        return self.result.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "challenger": self.challenger,
            "metric": self.metric,
            "difference": self.result.difference,
            "low": self.result.low,
            "high": self.result.high,
            "p_value": self.result.p_value,
            "significant": self.significant,
        }


@dataclass(frozen=True)
class RetrievalReport:
    queries: int
    skipped_queries: int  # their intent has no indexed ticket, so nothing could be relevant
    indexed: int
    fusion: FusionParams
    systems: dict[str, SystemScores]
    comparisons: list[Comparison]
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "skipped_queries": self.skipped_queries,
            "indexed": self.indexed,
            "fusion": self.fusion.to_dict(),
            "means": {mode: scores.means for mode, scores in self.systems.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
            "test": {"method": "paired bootstrap, one-sided", "n_boot": self.n_boot, "seed": self.seed},
        }

    def markdown(self) -> str:
        """The means side by side, then each comparison's difference, interval and p-value."""
        lines = [
            "| mode | " + " | ".join(RETRIEVAL_METRICS) + " |",
            "|---" * (len(RETRIEVAL_METRICS) + 1) + "|",
        ]
        for mode, scores in self.systems.items():
            lines.append(
                f"| {mode} | " + " | ".join(f"{scores.means[m]:.4f}" for m in RETRIEVAL_METRICS) + " |"
            )
        lines += [
            "",
            "| challenger vs baseline | metric | difference | 95% interval | p (better) |",
            "|---" * 5 + "|",
        ]
        for c in self.comparisons:
            r = c.result
            lines.append(
                f"| {c.challenger} vs {c.baseline} | {c.metric} | {r.difference:+.4f} | "
                f"[{r.low:+.4f}, {r.high:+.4f}] | {r.p_value:.4f}{' *' if c.significant else ''} |"
            )
        return "\n".join(lines)


def evaluate_retrieval(
    index: RetrievalIndex,
    tenant: str,
    queries: Sequence[str],
    intents: Sequence[str],
    *,
    query_vectors: np.ndarray | None = None,
    modes: Sequence[SearchMode] = SEARCH_MODES,
    comparisons: Iterable[tuple[SearchMode, SearchMode]] = DEFAULT_COMPARISONS,
    fusion: FusionParams | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> RetrievalReport:
    """Score each mode on ``queries`` (intent-labelled) against ``tenant``'s tickets, and test each
    ``(baseline, challenger)`` pair per metric."""
    if len(queries) != len(intents):
        raise UsageError("every query needs its intent")
    per_intent: dict[str, int] = {}
    for item in index.items(tenant):
        if item.kind == "ticket":
            for intent in item.intents:
                per_intent[intent] = per_intent.get(intent, 0) + 1
    keep = [row for row, intent in enumerate(intents) if per_intent.get(intent, 0) > 0]
    if not keep:
        raise UsageError(f"no query's intent has a ticket of tenant {tenant!r}")
    vectors = index.encode([queries[row] for row in keep]) if query_vectors is None else query_vectors[keep]
    n_relevant = np.array([per_intent[intents[row]] for row in keep])
    systems: dict[str, SystemScores] = {}
    for mode in modes:
        flags = []
        for j, row in enumerate(keep):
            hits = index.search_encoded(
                tenant, queries[row], vectors[j], METRIC_DEPTH, kinds=TICKETS, mode=mode, fusion=fusion
            )
            flags.append([intents[row] in hit.item.intents for hit in hits])
        values = query_metrics(relevance_matrix(flags), n_relevant)
        systems[mode] = SystemScores(mode, {m: float(v.mean()) for m, v in values.items()}, values)
    tests = [
        Comparison(
            base,
            challenger,
            metric,
            paired_bootstrap(
                systems[base].per_query[metric],
                systems[challenger].per_query[metric],
                n_boot=n_boot,
                seed=seed,
            ),
            alpha,
        )
        for base, challenger in comparisons
        for metric in RETRIEVAL_METRICS
    ]
    return RetrievalReport(
        queries=len(keep),
        skipped_queries=len(queries) - len(keep),
        indexed=len(index.items(tenant)),
        fusion=fusion or index.fusion,
        systems=systems,
        comparisons=tests,
        n_boot=n_boot,
        seed=seed,
    )


@dataclass(frozen=True)
class TuningResult:
    best: FusionParams
    metric: str
    table: list[tuple[FusionParams, float]]  # every candidate with its mean metric, best first


def tune_fusion(
    index: RetrievalIndex,
    tenant: str,
    queries: Sequence[str],
    intents: Sequence[str],
    candidates: Iterable[FusionParams],
    *,
    query_vectors: np.ndarray | None = None,
    metric: str = "ndcg@10",
) -> TuningResult:
    """The candidate with the best mean ``metric`` of hybrid search (ties: the earlier candidate)."""
    vectors = index.encode(list(queries)) if query_vectors is None else query_vectors
    table = []
    for params in candidates:
        report = evaluate_retrieval(
            index,
            tenant,
            queries,
            intents,
            query_vectors=vectors,
            modes=("hybrid",),
            comparisons=(),
            fusion=params,
        )
        table.append((params, report.systems["hybrid"].means[metric]))
    ranked = sorted(table, key=lambda entry: -entry[1])
    return TuningResult(ranked[0][0], metric, ranked)


@dataclass(frozen=True)
class LabelledSplit:
    """Row positions of a labelled frame: what to index, and what to query with."""

    indexed: np.ndarray
    queries: np.ndarray


def retrieval_splits(
    frame: pd.DataFrame, *, digest: str, seed: int = 0, validation_fraction: float = 0.2
) -> tuple[LabelledSplit, LabelledSplit]:
    """The reporting split (index the training side, query with validation) and a tuning split carved from
    the training side only (seed + 1), so that tuning never sees a validation query."""
    outer = split_frame(frame, digest=digest, seed=seed, validation_fraction=validation_fraction)
    inner = split_frame(
        frame.iloc[outer.train].reset_index(drop=True),
        digest=digest,
        seed=seed + 1,
        validation_fraction=validation_fraction,
    )
    return (
        LabelledSplit(outer.train, outer.validation),
        LabelledSplit(outer.train[inner.train], outer.train[inner.validation]),
    )


def tickets_from_frame(
    frame: pd.DataFrame,
    rows: np.ndarray,
    *,
    tenant: str,
    text_column: str = "text",
    label_column: str = "label",
) -> list[KnowledgeItem]:
    """Labelled rows as tickets; ids are the row positions, which are unique in the frame."""
    texts, labels = frame[text_column].to_numpy(dtype=object), frame[label_column].to_numpy(dtype=object)
    return [
        KnowledgeItem(
            id=f"row-{row}", tenant=tenant, kind="ticket", text=str(texts[row]), intents=(str(labels[row]),)
        )
        for row in rows.tolist()
    ]
