"""Sentence embeddings for grounding, cached: sources are quoted again and again, tickets almost never."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

Encoder = Callable[[Sequence[str]], np.ndarray]


class SentenceVectors:
    """Unit vectors of sentences through ``encode``, the last ``capacity`` distinct sentences kept (LRU).

    Bounded by entries (384 float32 each: 20,000 entries hold about 31 MB), so a long-running server does
    not grow with every sentence it ever saw.
    """

    def __init__(self, encode: Encoder, capacity: int = 20_000) -> None:
        self._encode = encode
        self._capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        if missing:
            fresh = self._encode(missing)
            with self._lock:
                for sentence, vector in zip(missing, fresh, strict=True):
                    self._cache[sentence] = vector
                    self._cache.move_to_end(sentence)
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for sentence in sentences:
                vector = self._cache.get(sentence)
                if vector is None:  # evicted by a concurrent caller between the two steps
                    vector = self._encode([sentence])[0]
                else:
                    self._cache.move_to_end(sentence)
                rows.append(vector)
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._cache)

    def support(self, sentence: str, pool: Sequence[str]) -> float:
        """The best cosine similarity of ``sentence`` with any sentence of ``pool`` (0 for an empty pool)."""
        if not pool:
            return 0.0
        vectors = self([sentence, *pool])
        return float(np.max(vectors[1:] @ vectors[0]))
