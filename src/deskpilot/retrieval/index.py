"""The retrieval index: tenant partitions searched densely and lexically, the two candidate lists fused.

An index is immutable once built: :meth:`RetrievalIndex.add` returns a new index that shares every untouched
partition, so concurrent searches on the old one need no lock and a service swaps indexes by assignment.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from deskpilot.errors import UsageError
from deskpilot.retrieval.dense import AnnParams
from deskpilot.retrieval.encoding import TextEncoder
from deskpilot.retrieval.fusion import FusionParams, convex_fusion, reciprocal_rank_fusion
from deskpilot.retrieval.items import KINDS, Hit, Kind, KnowledgeItem
from deskpilot.retrieval.lexical import LexicalParams, top_k
from deskpilot.retrieval.partition import Partition

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)


@dataclass(frozen=True)
class BuildStats:
    """What the last build or add did: items indexed, how many were encoded, and how long it took."""

    items: int
    encoded: int
    seconds: float
    encode_seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "items": self.items,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "items_per_second": round(self.items_per_second, 1),
        }


class RetrievalIndex:
    """Tenant-partitioned hybrid search. Build with :meth:`build`; load a published one from the catalog."""

    def __init__(
        self,
        partitions: Mapping[str, Partition],
        encoder: TextEncoder,
        *,
        ann: AnnParams,
        lexical: LexicalParams,
        fusion: FusionParams,
        stats: BuildStats | None = None,
        origin: int | None = None,
    ) -> None:
        self.partitions: Mapping[str, Partition] = dict(partitions)
        self.encoder = encoder
        self.ann = ann
        self.lexical = lexical
        self.fusion = fusion
        self.stats = stats
        self.origin = origin  # the catalog version this index was loaded from (or derived from by add)

    @classmethod
    def build(
        cls,
        items: Sequence[KnowledgeItem],
        encoder: TextEncoder,
        *,
        vectors: np.ndarray | None = None,
        ann: AnnParams | None = None,
        lexical: LexicalParams | None = None,
        fusion: FusionParams | None = None,
    ) -> RetrievalIndex:
        """Index ``items`` (``vectors``: their embeddings when already computed, else they are encoded)."""
        empty = cls(
            {},
            encoder,
            ann=ann or AnnParams(),
            lexical=lexical or LexicalParams(),
            fusion=fusion or FusionParams(),
        )
        return empty.add(items, vectors=vectors)

    def add(self, items: Sequence[KnowledgeItem], *, vectors: np.ndarray | None = None) -> RetrievalIndex:
        """A new index with ``items`` added; an item whose (tenant, id) exists replaces it. Only ``items``
        are encoded; partitions of other tenants are shared, not copied."""
        started = time.perf_counter()
        vectors, encoded, encode_seconds = self._vectors_for(items, vectors)
        partitions = dict(self.partitions)
        for tenant, rows in _rows_by_tenant(items).items():
            chunk = [items[row] for row in rows]
            if tenant in partitions:
                partitions[tenant] = partitions[tenant].merged(chunk, vectors[rows])
            else:
                partitions[tenant] = Partition.build(tenant, chunk, vectors[rows], self.ann, self.lexical)
        stats = BuildStats(len(items), encoded, time.perf_counter() - started, encode_seconds)
        return RetrievalIndex(
            partitions,
            self.encoder,
            ann=self.ann,
            lexical=self.lexical,
            fusion=self.fusion,
            stats=stats,
            origin=self.origin,
        )

    def with_fusion(self, fusion: FusionParams) -> RetrievalIndex:
        """The same partitions fused differently (evaluation and tuning)."""
        return RetrievalIndex(
            self.partitions,
            self.encoder,
            ann=self.ann,
            lexical=self.lexical,
            fusion=fusion,
            stats=self.stats,
            origin=self.origin,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Query embeddings, for callers that batch several queries into one encoder call."""
        return self.encoder.encode(texts)

    def search(
        self,
        tenant: str,
        text: str,
        k: int = 10,
        *,
        kinds: Collection[Kind] | None = None,
        mode: SearchMode = "hybrid",
        fusion: FusionParams | None = None,
    ) -> list[Hit]:
        """The ``k`` best items of ``tenant`` for ``text``, of ``kinds`` only when given; [] for an unknown
        tenant (without encoding anything)."""
        if tenant not in self.partitions:
            _check(k, kinds, mode)
            return []
        vector = None if mode == "lexical" else self.encoder.encode([text])[0]
        return self.search_encoded(tenant, text, vector, k, kinds=kinds, mode=mode, fusion=fusion)

    def search_encoded(
        self,
        tenant: str,
        text: str,
        vector: np.ndarray | None,
        k: int = 10,
        *,
        kinds: Collection[Kind] | None = None,
        mode: SearchMode = "hybrid",
        fusion: FusionParams | None = None,
    ) -> list[Hit]:
        """:meth:`search` with the query's embedding already computed (``None`` only in lexical mode)."""
        _check(k, kinds, mode)
        if mode == "lexical":
            vector = None  # a lexical search neither ranks nor scores by embedding
        partition = self.partitions.get(tenant)
        if partition is None:
            return []
        allowed, count = partition.allowed(kinds)
        if count == 0:
            return []
        params = fusion or self.fusion
        depth = max(k, params.depth)
        ranked: dict[str, list[tuple[str, float]]] = {}
        if mode != "lexical":
            if vector is None:
                raise UsageError(f"a {mode} search needs the query's embedding")
            positions, scores = partition.dense.search(vector, depth, allowed, count)
            ranked["dense"] = _by_score_then_id(partition, positions, scores)
        lexical_scores = None
        if mode != "dense":
            lexical_scores = partition.lexical.scores(text)
            if lexical_scores is not None:
                positions, scores = top_k(lexical_scores, depth, allowed)
                ranked["lexical"] = _by_score_then_id(partition, positions, scores)
        if params.method == "convex":
            keys = sorted({key for entries in ranked.values() for key, _ in entries})
            lexical_top = ranked["lexical"][0][1] if ranked.get("lexical") else 1.0
            fused = convex_fusion(
                ranked,
                _complete_scores(partition, keys, ranked, vector, lexical_scores),
                weights=params.weights(),
                scales={"lexical": lexical_top},
                limit=k,
            )
        else:
            fused = reciprocal_rank_fusion(ranked, k=params.rrf_k, weights=params.weights(), limit=k)
        complete = _complete_scores(partition, [entry.key for entry in fused], ranked, vector, lexical_scores)
        return [
            Hit(
                item=partition.items[partition.positions[entry.key]],
                score=entry.score,
                dense_rank=entry.ranks.get("dense"),
                lexical_rank=entry.ranks.get("lexical"),
                dense_score=complete.get("dense", {}).get(entry.key),
                lexical_score=complete.get("lexical", {}).get(entry.key),
            )
            for entry in fused
        ]

    def items(self, tenant: str) -> tuple[KnowledgeItem, ...]:
        partition = self.partitions.get(tenant)
        return partition.items if partition is not None else ()

    def item(self, tenant: str, item_id: str) -> KnowledgeItem | None:
        """One of the tenant's items by its id, or None."""
        partition = self.partitions.get(tenant)
        position = None if partition is None else partition.positions.get(item_id)
        return None if partition is None or position is None else partition.items[position]

    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted(self.partitions))

    def counts(self) -> dict[str, dict[str, int]]:
        """Items per tenant and kind."""
        return {tenant: self.partitions[tenant].counts() for tenant in self.tenants()}

    def __len__(self) -> int:
        return sum(len(partition.items) for partition in self.partitions.values())

    def _vectors_for(
        self, items: Sequence[KnowledgeItem], vectors: np.ndarray | None
    ) -> tuple[np.ndarray, int, float]:
        """The items' embeddings, how many were encoded now, and how long that took. An item already indexed
        with the same search text (only its reply, intents or source changed) keeps its stored embedding."""
        if vectors is not None:
            if vectors.shape != (len(items), self.encoder.dimension):
                raise UsageError(
                    f"vectors have shape {vectors.shape}, expected ({len(items)}, {self.encoder.dimension})"
                )
            return np.asarray(vectors, dtype=np.float32), 0, 0.0
        out = np.zeros((len(items), self.encoder.dimension), dtype=np.float32)
        fresh = []
        for row, item in enumerate(items):
            partition = self.partitions.get(item.tenant)
            position = None if partition is None else partition.positions.get(item.id)
            if (
                partition is not None
                and position is not None
                and partition.items[position].search_text == item.search_text
            ):
                out[row] = partition.vectors[position]
                continue
            fresh.append(row)
        started = time.perf_counter()
        if fresh:
            out[fresh] = self.encoder.encode([items[row].search_text for row in fresh])
        return out, len(fresh), time.perf_counter() - started


def _rows_by_tenant(items: Iterable[KnowledgeItem]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        if item.kind not in KINDS:
            raise UsageError(f"item {item.id!r} of tenant {item.tenant!r} has unknown kind {item.kind!r}")
        rows.setdefault(item.tenant, []).append(row)
    return rows


def _by_score_then_id(
    partition: Partition, positions: np.ndarray, scores: np.ndarray
) -> list[tuple[str, float]]:
    entries = [
        (partition.items[p].id, float(s)) for p, s in zip(positions.tolist(), scores.tolist(), strict=True)
    ]
    entries.sort(key=lambda entry: (-entry[1], entry[0]))
    return entries


def _complete_scores(
    partition: Partition,
    keys: Sequence[str],
    ranked: Mapping[str, Sequence[tuple[str, float]]],
    vector: np.ndarray | None,
    lexical_scores: np.ndarray | None,
) -> dict[str, dict[str, float]]:
    """Each retriever's score of each of ``keys``: the score its list ranked the item by, or where the item is
    not in its list, the cosine from the stored vectors and the BM25 score from the query's full score vector
    (0: no shared term)."""
    out: dict[str, dict[str, float]] = {}
    for name, available in (("dense", vector is not None), ("lexical", lexical_scores is not None)):
        if not available:
            continue
        listed = dict(ranked.get(name, ()))
        missing = [key for key in keys if key not in listed]
        if missing:
            positions = np.array([partition.positions[key] for key in missing], dtype=np.int64)
            if name == "dense" and vector is not None:
                values = np.asarray(partition.vectors[positions], dtype=np.float32) @ vector.astype(
                    np.float32
                )
            elif lexical_scores is not None:
                values = lexical_scores[positions]
            listed.update(zip(missing, values.tolist(), strict=True))
        out[name] = {key: listed[key] for key in keys}
    return out


def _check(k: int, kinds: Collection[str] | None, mode: str) -> None:
    if k < 1:
        raise UsageError(f"k must be at least 1, not {k}")
    if mode not in SEARCH_MODES:
        raise UsageError(f"unknown search mode {mode!r}; known: {', '.join(SEARCH_MODES)}")
    if kinds is not None:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise UsageError(f"unknown kind {unknown[0]!r}; known: {', '.join(KINDS)}")
