"""A deterministic stand-in for the sentence encoder: hashed bag of words, so tests need no ONNX model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from deskpilot.retrieval.items import Kind, KnowledgeItem
from deskpilot.retrieval.lexical import tokenize


class HashingEncoder:
    """Texts sharing words get similar unit vectors; an empty text gets a fixed unit vector."""

    def __init__(self, dimension: int = 64) -> None:
        self._dimension = dimension
        self.calls: list[int] = []  # how many texts each encode call got

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = 1e-3
            for word in tokenize(text, stopwords=False):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dimension] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def ticket(tenant: str, id_: str, text: str, intent: str = "other", kind: Kind = "ticket") -> KnowledgeItem:
    return KnowledgeItem(id=id_, tenant=tenant, kind=kind, text=text, intents=(intent,))
