"""Ranking metrics per query, and a paired test of two retrieval systems on the same queries.

Each query's result list becomes a row of booleans (is the item at rank r relevant?), so every metric is a
vectorized reduction over a queries × depth matrix. Systems are compared on per-query values with a seeded
paired bootstrap: queries are resampled, and both systems' values move together, which removes the large
between-query variance that an unpaired comparison would have to overcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deskpilot.evaluation.significance import p_better

RETRIEVAL_METRICS = ("p@1", "p@5", "recall@10", "ndcg@10", "mrr")
METRIC_DEPTH = 10  # every metric reads at most the top 10


def relevance_matrix(retrieved: Sequence[Sequence[bool]], depth: int = METRIC_DEPTH) -> np.ndarray:
    """Queries × ``depth`` booleans from per-query relevance lists, cut or padded with False."""
    matrix = np.zeros((len(retrieved), depth), dtype=bool)
    for row, flags in enumerate(retrieved):
        kept = list(flags)[:depth]
        matrix[row, : len(kept)] = kept
    return matrix


def query_metrics(relevant: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query precision@1 and @5, recall@10, nDCG@10 (binary gains) and reciprocal rank within the list.

    ``relevant`` is queries × depth (depth ≥ 10); ``n_relevant`` counts each query's relevant items in the
    whole index, which recall and the ideal DCG need. Queries without relevant items are the caller's to drop.
    """
    if relevant.ndim != 2 or relevant.shape[1] < METRIC_DEPTH:
        raise ValueError(f"need a queries × ≥{METRIC_DEPTH} relevance matrix, got shape {relevant.shape}")
    if relevant.shape[0] != n_relevant.shape[0] or (n_relevant < 1).any():
        raise ValueError("every query needs a count of at least one relevant item")
    hits = relevant[:, :METRIC_DEPTH].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, METRIC_DEPTH + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, METRIC_DEPTH) - 1]
    first = np.argmax(relevant, axis=1)
    found = relevant.any(axis=1)
    return {
        "p@1": hits[:, 0],
        "p@5": hits[:, :5].mean(axis=1),
        "recall@10": hits.sum(axis=1) / n_relevant,
        "ndcg@10": (hits * discounts).sum(axis=1) / ideal,
        "mrr": np.where(found, 1.0 / (first + 1), 0.0),
    }


@dataclass(frozen=True)
class PairedDifference:
    """``challenger − baseline`` of a metric's mean, its bootstrap interval, and the one-sided p-value of
    "the challenger is better"."""

    difference: float
    low: float
    high: float
    p_value: float


def paired_bootstrap(
    baseline: np.ndarray, challenger: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> PairedDifference:
    """Resample queries with replacement ``n_boot`` times; both systems share every resample."""
    if baseline.shape != challenger.shape or baseline.ndim != 1 or baseline.size == 0:
        raise ValueError("a paired test needs two equally long, non-empty per-query value arrays")
    differences = challenger.astype(np.float64) - baseline.astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // differences.size)
    means = []
    for start in range(0, n_boot, chunk):
        rows = rng.integers(0, differences.size, size=(min(chunk, n_boot - start), differences.size))
        means.append(differences[rows].mean(axis=1))
    samples = np.concatenate(means)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return PairedDifference(float(differences.mean()), float(low), float(high), p_better(samples))
