"""Every family honours the Classifier contract the same way (a scikit-learn-style estimator check)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deskpilot.models.base import Classifier, NotFittedError
from deskpilot.models.families import FAMILIES, make_classifier
from tests.helpers import bundled_split

SMALL_PARAMS: dict[str, dict[str, object]] = {
    "tfidf": {"c": 5.0},
    "embed": {"precision": "fp32"},
    "finetune": {"epochs": 1, "batch_size": 8, "max_length": 24},
    "ensemble": {"members": ("tfidf", "embed"), "member_params": {"embed": {"precision": "fp32"}}},
}


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str], list[str], list[str]]:
    return bundled_split(3, 16, 4)


def make(family: str, cache: Path) -> Classifier:
    return make_classifier(family, SMALL_PARAMS[family], cache_dir=cache)


def test_every_family_is_covered() -> None:
    assert set(SMALL_PARAMS) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_classifier_contract(
    family: str,
    encoder_cache: Path,
    data: tuple[list[str], list[str], list[str], list[str]],
    tmp_path: Path,
) -> None:
    train_texts, train_labels, val_texts, val_labels = data
    model = make(family, encoder_cache)

    learned = [name for name in vars(model) if name.endswith("_") and not name.startswith("_")]
    assert learned == [], f"__init__ must store hyperparameters only, found {learned}"
    params = model.get_params()
    assert "cache_dir" not in params
    rebuilt: Callable[..., Classifier] = type(model)
    assert rebuilt(**params).get_params() == params
    with pytest.raises(NotFittedError):
        model.predict_proba(val_texts)

    assert model.fit(train_texts, train_labels, validation=(val_texts, val_labels)) is model
    assert list(model.classes_) == sorted(set(train_labels))
    logits = model.decision_function(val_texts)
    assert logits.shape == (len(val_texts), 3)
    probs = model.calibrate(val_texts, val_labels).predict_proba(val_texts)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all(), "calibration must not change the ranking"
    assert model.predict_proba([]).shape == (0, 3)

    model.save(tmp_path / family)
    loaded = type(model).load(tmp_path / family)
    assert loaded.get_params() == params
    assert loaded.temperature_ == model.temperature_
    np.testing.assert_allclose(loaded.predict_proba(val_texts), probs, atol=1e-6)
