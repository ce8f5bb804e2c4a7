"""The direct TF-IDF scorer computes the fitted pipeline's own logits, and steps aside for other shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from deskpilot.models.tfidf import TfidfClassifier
from deskpilot.models.tfidf_scorer import compile_scorer
from tests.helpers import bundled_subset

AWKWARD_TEXTS = [
    "",
    "   ",
    "a",
    "!!!",
    "card card card card declined declined",
    "ÄÖÜ ñ 日本語のテキスト",
    "my card was declined " * 200,
    "\x00\t\n mixed\u200bspaces",
]


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    frame = bundled_subset(labels=6, per_label=40, seed=3)
    return frame["text"].tolist(), frame["label"].tolist()


def pipeline_logits(model: TfidfClassifier, texts: list[str]) -> np.ndarray:
    return np.asarray(model.pipeline_.decision_function(texts), dtype=np.float64)


def test_matches_the_pipeline_on_real_and_awkward_texts(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data
    model = TfidfClassifier().fit(texts, labels)
    scorer = compile_scorer(model.pipeline_)
    assert scorer is not None
    probe = texts + AWKWARD_TEXTS + [t.upper() for t in texts[:20]]
    np.testing.assert_allclose(scorer(probe), pipeline_logits(model, probe), rtol=0, atol=1e-10)
    for text in AWKWARD_TEXTS:  # one at a time, as a lone request is scored
        np.testing.assert_allclose(scorer([text]), pipeline_logits(model, [text]), rtol=0, atol=1e-10)


def test_the_classifier_uses_it_and_a_loaded_model_agrees(
    data: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    texts, labels = data
    model = TfidfClassifier(c=4.0).fit(texts, labels)
    assert model._direct_scorer() is not None
    np.testing.assert_allclose(model.decision_function(texts), pipeline_logits(model, texts), atol=1e-10)
    model.save(tmp_path / "m")
    loaded = TfidfClassifier.load(tmp_path / "m")
    assert loaded._direct_scorer() is not None
    np.testing.assert_allclose(loaded.decision_function(texts), model.decision_function(texts), atol=1e-10)


def test_refitting_rebuilds_the_scorer(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data
    model = TfidfClassifier().fit(texts[:120], labels[:120])
    model.decision_function(texts[:3])
    model.fit(texts, labels)
    np.testing.assert_allclose(model.decision_function(texts), pipeline_logits(model, texts), atol=1e-10)


def test_binary_models_give_one_logit_per_text_like_scikit_learn(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data
    two = sorted(set(labels))[:2]
    pairs = [(t, y) for t, y in zip(texts, labels, strict=True) if y in two]
    model = TfidfClassifier().fit([t for t, _ in pairs], [y for _, y in pairs])
    scorer = compile_scorer(model.pipeline_)
    assert scorer is not None
    probe = [t for t, _ in pairs] + AWKWARD_TEXTS
    direct = scorer(probe)
    assert direct.shape == (len(probe),)
    np.testing.assert_allclose(direct, pipeline_logits(model, probe), atol=1e-10)
    assert model.decision_function(probe[:4]).shape == (4, 2)


def test_other_pipeline_shapes_are_left_to_scikit_learn(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data

    def fitted(*steps: tuple[str, object]) -> Pipeline:
        return Pipeline(list(steps)).fit(texts, labels)  # type: ignore[arg-type]

    counts = FeatureUnion([("w", CountVectorizer())])
    weighted = FeatureUnion([("w", TfidfVectorizer())], transformer_weights={"w": 2.0})
    no_norm = FeatureUnion([("w", TfidfVectorizer(norm="l1"))])
    assert compile_scorer(fitted(("f", counts), ("m", LogisticRegression(max_iter=500)))) is None
    assert compile_scorer(fitted(("f", weighted), ("m", LogisticRegression(max_iter=500)))) is None
    assert compile_scorer(fitted(("f", no_norm), ("m", LogisticRegression(max_iter=500)))) is None
    assert compile_scorer(fitted(("f", TfidfVectorizer()), ("m", LogisticRegression(max_iter=500)))) is None
    assert compile_scorer("not a pipeline") is None
