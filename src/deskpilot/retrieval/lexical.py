"""BM25 over one partition's texts (bm25s), with a plain lowercase word tokenizer.

No stemmer package is installed, so terms are lowercase word characters, optionally cut by a light suffix
stripper (one inflection: "charged", "charges", "charging" → "charg"); English stopwords (bm25s' list) are
dropped by default, which also keeps the postings a query touches short. Scores come back for every
document so the caller can mask out other kinds *before* taking the top k.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN)
_SUFFIXES = ("ing", "ed", "ies", "es", "s", "e", "ly")  # first match wins
_EMPTY_DOC = [""]  # BM25's own "empty" term: keeps a text without words (and avgdl) well-defined


@dataclass(frozen=True)
class LexicalParams:
    """BM25 (Lucene variant) hyperparameters and the tokenizer choice; the defaults were tuned with the fusion
    (stopwords and stemming each added about 0.01 to BM25's nDCG@10 on Banking77; k1 and b barely matter)."""

    k1: float = 0.9
    b: float = 0.75
    stopwords: bool = True
    stem: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LexicalParams:
        return cls(
            k1=float(data["k1"]),
            b=float(data["b"]),
            stopwords=bool(data["stopwords"]),
            stem=bool(data.get("stem", False)),
        )


def tokenize(text: str, *, stopwords: bool = True, stem: bool = False) -> list[str]:
    """Lowercase word tokens, optionally without English stopwords and lightly stemmed."""
    words = _WORD.findall(text.lower())
    if stopwords:
        words = [w for w in words if w not in _STOPWORDS]
    return [light_stem(w) for w in words] if stem else words


def light_stem(word: str) -> str:
    """``word`` without one common English suffix, keeping at least three letters ("ss" words stay)."""
    if word.endswith("ss"):
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class LexicalIndex:
    """BM25 scorer of one partition; ``fit`` learns the vocabulary and the per-term score matrix."""

    def __init__(self, params: LexicalParams | None = None) -> None:
        self.params = params or LexicalParams()

    def fit(self, texts: Sequence[str]) -> Self:
        corpus = [self._tokens(t) or _EMPTY_DOC for t in texts]
        model = bm25s.BM25(k1=self.params.k1, b=self.params.b, method="lucene")
        model.index(corpus, show_progress=False)
        self.bm25_ = model
        self.size_ = len(texts)
        return self

    def scores(self, query: str) -> np.ndarray | None:
        """BM25 score of every document for ``query``; ``None`` when no query term is in the vocabulary."""
        ids = self.bm25_.get_tokens_ids([t for t in self._tokens(query) if t])
        if not ids:
            return None
        return np.asarray(self.bm25_.get_scores_from_ids(sorted(set(ids))), dtype=np.float32)

    def _tokens(self, text: str) -> list[str]:
        return tokenize(text, stopwords=self.params.stopwords, stem=self.params.stem)

    def save(self, directory: Path) -> None:
        self.bm25_.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, params: LexicalParams, size: int, *, mmap: bool = True) -> LexicalIndex:
        """The index :meth:`save` wrote; the caller turns a failure here into an ArtifactError."""
        index = cls(params)
        index.bm25_ = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        index.size_ = size
        if int(index.bm25_.scores["num_docs"]) != size:
            raise ValueError(f"BM25 index has {index.bm25_.scores['num_docs']} documents, expected {size}")
        return index


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the ``k`` best positive scores among ``allowed`` rows, best first.

    Selecting among all rows costs more than scoring them (argpartition of 100k floats: ~1 ms), so rows are
    first cut to those above half (then a quarter) of the best score, which still holds the top ``k`` when
    at least ``k`` rows pass. Ties are broken by position (also at the cut); fusion breaks them again by id.
    """
    if allowed is not None:
        scores = np.where(allowed, scores, 0.0)
    best = float(scores.max()) if scores.size else 0.0
    candidates = np.zeros(0, dtype=np.int64)
    if best > 0.0:
        for fraction in (0.5, 0.25, 0.0):
            candidates = np.flatnonzero(scores > best * fraction)
            if candidates.size >= k:
                break
    if candidates.size > k:
        values = scores[candidates]
        kth = -np.partition(-values, k - 1)[k - 1]
        above = candidates[values > kth]
        candidates = np.concatenate([above, candidates[values == kth][: k - above.size]])
    chosen = candidates[np.lexsort((candidates, -scores[candidates]))]
    return chosen, scores[chosen]
