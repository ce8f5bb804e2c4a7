"""The TF-IDF family against the Classifier contract (scikit-learn conventions, save/load round trip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.models.base import NotFittedError
from deskpilot.models.tfidf import PIPELINE_FILE, TfidfClassifier
from tests.helpers import bundled_subset


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    frame = bundled_subset(labels=5, per_label=30)
    return frame["text"].tolist(), frame["label"].tolist()


def test_init_stores_hyperparameters_only() -> None:
    model = TfidfClassifier(c=3.0)
    assert model.get_params()["c"] == 3.0
    assert not hasattr(model, "classes_")
    assert not hasattr(model, "pipeline_")
    with pytest.raises(NotFittedError):
        model.predict_proba(["hello"])


def test_fit_returns_self_and_learns_state(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data
    model = TfidfClassifier()
    assert model.fit(texts, labels) is model
    assert list(model.classes_) == sorted(set(labels))
    probs = model.predict_proba(texts[:7])
    assert probs.shape == (7, 5)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (model.predict(texts) == np.asarray(labels, dtype=object)).mean() > 0.95


def test_two_classes_give_two_columns(data: tuple[list[str], list[str]]) -> None:
    texts, labels = data
    pairs = [(t, y) for t, y in zip(texts, labels, strict=True) if y in set(sorted(set(labels))[:2])]
    model = TfidfClassifier().fit([t for t, _ in pairs], [y for _, y in pairs])
    assert model.decision_function([pairs[0][0]]).shape == (1, 2)


def test_save_load_round_trip(data: tuple[list[str], list[str]], tmp_path: Path) -> None:
    texts, labels = data
    model = TfidfClassifier(c=5.0).fit(texts, labels).calibrate(texts, labels)
    model.save(tmp_path / "m")
    loaded = TfidfClassifier.load(tmp_path / "m")
    assert loaded.get_params() == model.get_params()
    assert loaded.temperature_ == model.temperature_
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts))


def test_load_refuses_foreign_types(data: tuple[list[str], list[str]], tmp_path: Path) -> None:
    import skops.io as sio

    texts, labels = data
    model = TfidfClassifier().fit(texts, labels)
    model.save(tmp_path / "m")
    sio.dump({"payload": Path("/etc/passwd")}, tmp_path / "m" / PIPELINE_FILE)
    with pytest.raises(ValueError, match="types outside scikit-learn"):
        TfidfClassifier.load(tmp_path / "m")


def test_fit_rejects_mismatched_or_single_label_input() -> None:
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        TfidfClassifier().fit(["a", "b", "c"], ["x", "y"])
    with pytest.raises(ValueError, match="at least two distinct labels"):
        TfidfClassifier().fit(["a", "b"], ["x", "x"])
