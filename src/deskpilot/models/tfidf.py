"""TF-IDF family: word 1–2-grams and character 2–5-grams into a multinomial logistic regression.

Fast to train, fast to serve, no torch: it is the always-available model and the service's fallback. The
fitted pipeline is stored with skops, whose loader refuses any type outside scikit-learn's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from deskpilot.models.base import Classifier, encode_labels
from deskpilot.models.tfidf_scorer import TfidfLinearScorer, compile_scorer

PIPELINE_FILE = "pipeline.skops"


class TfidfClassifier(Classifier):
    family = "tfidf"
    _scorer: TfidfLinearScorer | None = None  # the fitted pipeline's direct scorer, set with ``pipeline_``

    def __init__(
        self,
        *,
        c: float = 10.0,
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (2, 5),
        char_min_df: int = 2,
        max_iter: int = 3000,
    ) -> None:
        self.c = c
        self.word_ngrams = tuple(word_ngrams)
        self.char_ngrams = tuple(char_ngrams)
        self.char_min_df = char_min_df
        self.max_iter = max_iter

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        classes, targets = encode_labels(labels)
        features = FeatureUnion(
            [
                ("word", TfidfVectorizer(ngram_range=self.word_ngrams, sublinear_tf=True)),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=self.char_ngrams,
                        sublinear_tf=True,
                        min_df=self.char_min_df,
                    ),
                ),
            ]
        )
        pipeline = Pipeline(
            [("features", features), ("linear", LogisticRegression(C=self.c, max_iter=self.max_iter))]
        )
        pipeline.fit(list(texts), targets)
        self.pipeline_ = pipeline
        self._scorer = compile_scorer(pipeline)
        self.classes_ = classes
        self.temperature_ = 1.0

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        scorer = self._direct_scorer()
        if scorer is not None:
            scores = scorer(texts)
        else:
            scores = np.asarray(self.pipeline_.decision_function(list(texts)), dtype=np.float64)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return scores

    def _direct_scorer(self) -> TfidfLinearScorer | None:
        """Scores the pipeline without scikit-learn's per-call checks; compiled where pipeline_ is set."""
        return self._scorer

    def _save(self, directory: Path) -> None:
        sio.dump(self.pipeline_, directory / PIPELINE_FILE)

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:
        path = directory / PIPELINE_FILE
        untrusted = sio.get_untrusted_types(file=path)
        if untrusted:
            raise ValueError(f"{path} contains types outside scikit-learn's own: {', '.join(untrusted)}")
        model = cls(**params)
        model.pipeline_ = sio.load(path)
        model._scorer = compile_scorer(model.pipeline_)
        return model
