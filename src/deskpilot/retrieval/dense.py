"""Inner-product search over one partition's unit vectors (faiss): exact when small, HNSW when large.

Exact search below ``exact_below`` items costs about a millisecond at 20k vectors and needs no tuning; above
it, HNSW keeps a query well under a millisecond. A kinds filter is a faiss ``IDSelectorBitmap`` applied
inside the search. HNSW under a selective filter can run out of allowed neighbours, so its ``efSearch``
grows as the allowed share shrinks, and a filter that leaves few items, or a search that still came back
short, is answered exactly over the allowed rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss as _faiss_module
import numpy as np

_faiss: Any = _faiss_module  # its bundled stubs lack HNSW search parameters and selectors
AnnKind = Literal["flat", "hnsw"]
_EXACT_SHARE = 0.05  # under this share of allowed rows, scanning them beats a filtered graph walk


@dataclass(frozen=True)
class AnnParams:
    """When to switch from exact search to HNSW, and HNSW's graph and search parameters."""

    exact_below: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    search_threads: int = 1  # one query is too small to split; threads only contend on shared cores
    build_threads: int = 0  # 0: faiss' default (all cores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnParams:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@contextmanager
def omp_threads(count: int) -> Iterator[None]:
    """faiss' OpenMP thread count for this thread, restored afterwards (0 leaves it alone)."""
    if count <= 0:
        yield
        return
    before = _faiss.omp_get_max_threads()
    _faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        _faiss.omp_set_num_threads(before)


class DenseIndex:
    """A faiss index over ``vectors`` (kept by the caller, row = position) and how it was chosen."""

    def __init__(self, index: Any, kind: AnnKind, params: AnnParams, vectors: np.ndarray) -> None:
        self.index = index
        self.kind = kind
        self.params = params
        self.vectors = vectors

    @classmethod
    def build(cls, vectors: np.ndarray, params: AnnParams, kind: AnnKind | None = None) -> DenseIndex:
        """Exact below ``params.exact_below`` rows, HNSW from there on (unless ``kind`` says which)."""
        kind = kind or ("flat" if len(vectors) < params.exact_below else "hnsw")
        dimension = vectors.shape[1]
        if kind == "flat":
            index = _faiss.IndexFlatIP(dimension)
        else:
            index = _faiss.IndexHNSWFlat(dimension, params.hnsw_m, _faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
            index.hnsw.efSearch = params.ef_search
        with omp_threads(params.build_threads):
            if len(vectors):
                index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, kind, params, vectors)

    def extended(self, vectors: np.ndarray) -> DenseIndex:
        """This index over ``vectors``, whose first ``ntotal`` rows it already holds: new rows are added to
        a copy (this one keeps serving); a partition that crossed ``exact_below`` is rebuilt as HNSW."""
        held = int(self.index.ntotal)
        wanted: AnnKind = "flat" if len(vectors) < self.params.exact_below else "hnsw"
        if wanted != self.kind or held > len(vectors):
            return DenseIndex.build(vectors, self.params)
        index = _faiss.clone_index(self.index)
        with omp_threads(self.params.build_threads):
            index.add(np.ascontiguousarray(vectors[held:], dtype=np.float32))
        return DenseIndex(index, self.kind, self.params, vectors)

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this partition's ANN choice."""
        if self.kind == "flat":
            return {"type": "IndexFlatIP", "exact_below": self.params.exact_below}
        return {
            "type": "IndexHNSWFlat",
            "exact_below": self.params.exact_below,
            "M": self.params.hnsw_m,
            "ef_construction": self.params.ef_construction,
            "ef_search": self.params.ef_search,
        }

    def search(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None, allowed_count: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions and inner products of the ``k`` nearest rows among ``allowed`` rows, best first."""
        total = len(self.vectors)
        count = (
            total if allowed is None else (allowed_count if allowed_count is not None else int(allowed.sum()))
        )
        k = min(k, count)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if allowed is not None and self.kind == "hnsw" and count < _EXACT_SHARE * total:
            return self._exact_subset(query[0], k, np.flatnonzero(allowed))
        selector = None
        if allowed is not None and count < total:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = _faiss.IDSelectorBitmap(total, _faiss.swig_ptr(bitmap))
        if self.kind == "hnsw":
            share = count / total
            ef = min(total, max(self.params.ef_search, k, math.ceil(self.params.ef_search / share)))
            params = _faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        else:
            params = _faiss.SearchParameters(sel=selector) if selector is not None else None
        with omp_threads(self.params.search_threads):
            scores, labels = self.index.search(query, k, params=params)
        keep = labels[0] >= 0
        positions, values = labels[0][keep].astype(np.int64), scores[0][keep]
        if positions.size < k:  # the graph walk ran out of (allowed) neighbours: answer exactly instead
            rows = np.arange(total) if allowed is None else np.flatnonzero(allowed)
            return self._exact_subset(query[0], k, rows)
        return positions, values

    def _exact_subset(self, query: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(self.vectors[rows] @ query, dtype=np.float32)
        best = np.argpartition(-scores, k - 1)[:k] if rows.size > k else np.arange(rows.size)
        best = best[np.argsort(-scores[best], kind="stable")]
        return rows[best].astype(np.int64), scores[best]

    def save(self, path: Path) -> None:
        """Only an HNSW graph is worth a file; an exact index is rebuilt from the vectors in milliseconds."""
        if self.kind == "hnsw":
            _faiss.write_index(self.index, os.fspath(path))

    @classmethod
    def load(cls, path: Path, kind: AnnKind, params: AnnParams, vectors: np.ndarray) -> DenseIndex:
        """The index :meth:`save` wrote (or an exact one over ``vectors``); errors are the caller's to map."""
        if kind == "flat":
            return cls.build(vectors, params, "flat")
        index = _faiss.read_index(os.fspath(path))
        if int(index.ntotal) != len(vectors) or int(index.d) != vectors.shape[1]:
            raise ValueError(f"holds {index.ntotal} vectors of {index.d} dims, expected {vectors.shape}")
        index.hnsw.efSearch = params.ef_search
        return cls(index, "hnsw", params, vectors)
