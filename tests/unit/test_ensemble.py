"""The ensemble family with TF-IDF members: weights on the simplex, round trip, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.models.ensemble import EnsembleClassifier
from tests.helpers import bundled_split


@pytest.fixture(scope="module")
def split() -> tuple[list[str], list[str], list[str], list[str]]:
    return bundled_split(5, 30, 8)


@pytest.mark.parametrize("combine", ["logpool", "mean"])
def test_fit_weights_and_round_trip(
    split: tuple[list[str], list[str], list[str], list[str]], tmp_path: Path, combine: str
) -> None:
    train_texts, train_labels, val_texts, val_labels = split
    model = EnsembleClassifier(
        members=("tfidf", "tfidf"),
        member_params={"tfidf": {"c": 1.0}},
        combine=combine,  # type: ignore[arg-type]
    )
    assert model.fit(train_texts, train_labels, validation=(val_texts, val_labels)) is model
    assert model.weights_.shape == (2,)
    assert model.weights_.sum() == pytest.approx(1.0)
    assert (model.weights_ >= 0).all()
    probs = model.calibrate(val_texts, val_labels).predict_proba(val_texts)
    assert np.allclose(probs.sum(axis=1), 1.0)
    model.save(tmp_path / "e")
    loaded = EnsembleClassifier.load(tmp_path / "e")
    np.testing.assert_allclose(loaded.predict_proba(val_texts), probs, atol=1e-9)


def test_logpool_of_one_member_is_that_member(
    split: tuple[list[str], list[str], list[str], list[str]],
) -> None:
    train_texts, train_labels, val_texts, val_labels = split
    model = EnsembleClassifier(members=("tfidf",)).fit(
        train_texts, train_labels, validation=(val_texts, val_labels)
    )
    member = model.members_[0]
    np.testing.assert_allclose(model.predict_proba(val_texts), member.predict_proba(val_texts), atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "validation", "message"),
    [
        ({}, None, "needs validation data"),
        ({"combine": "max"}, True, "combine must be"),
        ({"members": ("ensemble",)}, True, "non-ensemble members"),
    ],
)
def test_bad_configurations(
    split: tuple[list[str], list[str], list[str], list[str]],
    kwargs: dict[str, object],
    validation: object,
    message: str,
) -> None:
    train_texts, train_labels, val_texts, val_labels = split
    with pytest.raises(ValueError, match=message):
        EnsembleClassifier(**kwargs).fit(  # type: ignore[arg-type]
            train_texts, train_labels, validation=(val_texts, val_labels) if validation else None
        )
