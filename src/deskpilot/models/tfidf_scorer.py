"""The fitted TF-IDF pipeline's arithmetic without scikit-learn's per-call overhead.

``Pipeline.decision_function`` on one text spends most of its ~3 ms validating inputs and parameters, asking
narwhals whether a list is a dataframe, and fanning a two-part ``FeatureUnion`` out through joblib; the
arithmetic itself (count n-grams, sublinear tf, idf, l2 norm, a dot product) is a fraction of that. This
module reads the fitted vocabularies, idf weights and coefficients once and computes the same logits
directly; ``tests/unit/test_tfidf_scorer.py`` holds it to the pipeline's output. Pipelines of any other
shape are left to scikit-learn (``compile_scorer`` returns ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline


@dataclass(frozen=True)
class _FeatureBlock:
    """One fitted vectorizer: its analyzer and vocabulary, and where its columns start in the union."""

    analyze: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    sublinear_tf: bool
    offset: int

    def count(self, text: str) -> dict[int, int]:
        """Occurrences of each known feature of ``text``, by column of the union."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        offset = self.offset
        for feature in self.analyze(text):
            column = vocabulary.get(feature)
            if column is not None:
                column += offset
                counts[column] = counts.get(column, 0) + 1
        return counts


@dataclass(frozen=True)
class TfidfLinearScorer:
    """Logits of a fitted ``FeatureUnion`` of l2-normalised ``TfidfVectorizer``s into a linear model."""

    blocks: tuple[_FeatureBlock, ...]
    idf: np.ndarray  # the blocks' idf weights, concatenated in column order
    coefficients: np.ndarray  # (n_features, n_outputs), C order: a row per feature
    intercept: np.ndarray

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        columns: list[int] = []
        counts: list[int] = []
        segments: list[int] = []  # where each non-empty (text, block) run of entries starts
        sublinear: list[bool] = []  # per segment
        indptr = [0]
        for text in texts:
            for block in self.blocks:
                found = block.count(text)
                if found:
                    segments.append(len(columns))
                    sublinear.append(block.sublinear_tf)
                    for column in sorted(found):
                        columns.append(column)
                        counts.append(found[column])
            indptr.append(len(columns))
        index = np.asarray(columns, dtype=np.int64)
        tf = np.asarray(counts, dtype=np.float64)
        if segments:
            lengths = np.diff(np.append(segments, len(columns)))
            damp = np.repeat(np.asarray(sublinear, dtype=bool), lengths)
            tf[damp] = np.log(tf[damp]) + 1.0
            weights = tf * self.idf[index]
            norms = np.sqrt(np.add.reduceat(weights * weights, segments))
            weights /= np.repeat(np.where(norms > 0.0, norms, 1.0), lengths)
        else:
            weights = tf
        features = sp.csr_array((weights, index, indptr), shape=(len(texts), self.coefficients.shape[0]))
        logits: np.ndarray = np.asarray(features @ self.coefficients, dtype=np.float64) + self.intercept
        return logits[:, 0] if logits.shape[1] == 1 else logits


def compile_scorer(pipeline: object) -> TfidfLinearScorer | None:
    """A direct scorer for ``pipeline`` when it has the shape this family fits, else ``None``."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    (_, union), (_, linear) = pipeline.steps
    if not isinstance(union, FeatureUnion) or not isinstance(linear, LogisticRegression):
        return None
    if union.transformer_weights:
        return None
    blocks: list[_FeatureBlock] = []
    idf: list[np.ndarray] = []
    offset = 0
    for _, vectorizer in union.transformer_list:
        if not _is_plain_tfidf(vectorizer):
            return None
        blocks.append(
            _FeatureBlock(
                analyze=vectorizer.build_analyzer(),
                vocabulary=vectorizer.vocabulary_,
                sublinear_tf=bool(vectorizer.sublinear_tf),
                offset=offset,
            )
        )
        idf.append(np.asarray(vectorizer.idf_, dtype=np.float64))
        offset += len(vectorizer.idf_)
    coef = np.asarray(linear.coef_, dtype=np.float64)
    if coef.shape[1] != offset:
        return None
    return TfidfLinearScorer(
        blocks=tuple(blocks),
        idf=np.concatenate(idf),
        coefficients=np.ascontiguousarray(coef.T),
        intercept=np.asarray(linear.intercept_, dtype=np.float64),
    )


def _is_plain_tfidf(vectorizer: object) -> bool:
    """A fitted vectorizer whose transform is counts -> (sublinear) tf -> idf -> l2, in float64."""
    return (
        isinstance(vectorizer, TfidfVectorizer)
        and not vectorizer.binary
        and vectorizer.use_idf
        and vectorizer.norm == "l2"
        and np.dtype(vectorizer.dtype) == np.float64
        and hasattr(vectorizer, "vocabulary_")
        and hasattr(vectorizer, "idf_")
    )
