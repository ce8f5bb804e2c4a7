"""Fusion of the dense and lexical candidate lists into one ranking, one fused entry per item id.

RRF (Cormack et al., 2009) scores an item ``Σ_lists weight / (k + rank)``: it needs no score calibration
between cosine similarities and BM25 scores, which live on unrelated scales. An item found by several
retrievers gets every contribution summed and keeps every rank; a list that names an item twice counts it
once, at its best rank. RRF throws the scores away, though, and where one retriever is much stronger than
the other (MiniLM vs BM25 on intent-level relevance) a rank-only vote dilutes it: on Banking77, plain RRF
(k=60, equal weights) scored well below dense search alone. The ``convex`` method (Bruch et al., 2023)
mixes each candidate's cosine with its BM25 score divided by the query's best BM25 score; with the default
weights, tuned on queries carved from Banking77's training side (bench/retrieval_bench.py), it beat dense
search alone on held-out queries. Equal fused scores are ordered by id, so results never depend on input
order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from deskpilot.errors import UsageError

DEFAULT_RRF_K = 60
FusionMethod = Literal["rrf", "convex"]
FUSION_METHODS: tuple[FusionMethod, ...] = get_args(FusionMethod)


@dataclass(frozen=True)
class FusionParams:
    """How deep each retriever's candidate list goes, how lists are fused, and each retriever's weight
    (``rrf_k`` is used by RRF only). Plain RRF is ``FusionParams(method="rrf", depth=50, dense_weight=1,
    lexical_weight=1)``; the defaults are the tuned convex mix."""

    rrf_k: float = DEFAULT_RRF_K
    depth: int = 20
    dense_weight: float = 0.9
    lexical_weight: float = 0.1
    method: FusionMethod = "convex"

    def __post_init__(self) -> None:
        weights = (self.dense_weight, self.lexical_weight)
        if self.rrf_k < 0 or self.depth < 1 or min(weights) < 0 or max(weights) <= 0:
            raise UsageError(f"invalid fusion parameters: {self}")
        if self.method not in FUSION_METHODS:
            raise UsageError(f"unknown fusion method {self.method!r}; known: {', '.join(FUSION_METHODS)}")

    def weights(self) -> dict[str, float]:
        return {"dense": self.dense_weight, "lexical": self.lexical_weight}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionParams:
        return cls(
            rrf_k=float(data["rrf_k"]),
            depth=int(data["depth"]),
            dense_weight=float(data["dense_weight"]),
            lexical_weight=float(data["lexical_weight"]),
            method=data.get("method", "rrf"),
        )


@dataclass(frozen=True)
class Fused:
    """One item after fusion: its summed score, and its 1-based rank and score in each list that had it."""

    key: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


def reciprocal_rank_fusion(
    ranked: Mapping[str, Sequence[tuple[str, float]]],
    *,
    k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[Fused]:
    """Fuse ``{retriever: [(key, score), ...] best first}`` into one list, best first.

    ``weights`` defaults to 1 per retriever; ``limit`` keeps only the top entries.
    """
    totals: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, float]] = {}
    for name, entries in ranked.items():
        weight = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, (key, score) in enumerate(entries, start=1):
            seen = ranks.setdefault(key, {})
            if name in seen:
                continue  # a repeat within one list: its first (best) rank already counted
            seen[name] = rank
            scores.setdefault(key, {})[name] = score
            totals[key] = totals.get(key, 0.0) + weight / (k + rank)
    order = sorted(totals, key=lambda key: (-totals[key], key))
    if limit is not None:
        order = order[:limit]
    return [Fused(key, totals[key], ranks[key], scores[key]) for key in order]


def convex_fusion(
    ranked: Mapping[str, Sequence[tuple[str, float]]],
    scores: Mapping[str, Mapping[str, float]],
    *,
    weights: Mapping[str, float],
    scales: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[Fused]:
    """Rank every candidate of ``ranked`` by ``Σ weight · score / scale`` over the retrievers in ``scores``
    (``scores[retriever][key]``: the candidate's score there, also for keys that retriever did not rank;
    missing counts as 0), divided by the weights' sum. Ranks are kept as in :func:`reciprocal_rank_fusion`."""
    ranks: dict[str, dict[str, int]] = {}
    for name, entries in ranked.items():
        for rank, (key, _) in enumerate(entries, start=1):
            ranks.setdefault(key, {}).setdefault(name, rank)
    total_weight = sum(float(weights.get(name, 1.0)) for name in scores) or 1.0
    totals: dict[str, float] = {}
    for key in ranks:
        value = 0.0
        for name, table in scores.items():
            scale = (scales or {}).get(name, 1.0) or 1.0
            value += float(weights.get(name, 1.0)) * table.get(key, 0.0) / scale
        totals[key] = value / total_weight
    order = sorted(totals, key=lambda key: (-totals[key], key))
    if limit is not None:
        order = order[:limit]
    return [
        Fused(
            key, totals[key], ranks[key], {name: table[key] for name, table in scores.items() if key in table}
        )
        for key in order
    ]
