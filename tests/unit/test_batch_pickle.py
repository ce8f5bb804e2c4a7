"""Every model family survives the trip to a Ray actor: cloudpickle, to a machine without its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from deskpilot.batch.predictor import FramePredictor
from deskpilot.domain import RoutingThreshold
from deskpilot.models.artifact import TriageModel
from deskpilot.models.families import FAMILIES, make_classifier
from tests.helpers import bundled_split

SMALL_PARAMS: dict[str, dict[str, object]] = {
    "tfidf": {"c": 5.0},
    "embed": {"precision": "fp32"},
    "finetune": {"epochs": 1, "batch_size": 8, "max_length": 24},
    "ensemble": {"members": ("tfidf", "embed"), "member_params": {"embed": {"precision": "fp32"}}},
}
SLOW = {"embed", "finetune", "ensemble"}  # they export or train a transformer


def test_every_family_is_covered() -> None:
    assert set(SMALL_PARAMS) == set(FAMILIES)


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in sorted(FAMILIES)]
)
def test_a_loaded_model_round_trips_through_cloudpickle_without_its_files(
    family: str, encoder_cache: Path, tmp_path: Path
) -> None:
    train_texts, train_labels, val_texts, val_labels = bundled_split(3, 16, 4)
    classifier = make_classifier(family, SMALL_PARAMS[family], cache_dir=encoder_cache)
    classifier.fit(train_texts, train_labels, validation=(val_texts, val_labels))
    classifier.calibrate(val_texts, val_labels)
    TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100)).save(tmp_path / "model")
    loaded = TriageModel.load(tmp_path / "model")
    expected = loaded.predict_proba(val_texts)

    payload = cloudpickle.dumps(FramePredictor(loaded))
    shutil.rmtree(tmp_path / "model")  # a worker on another machine has none of these files
    restored = cloudpickle.loads(payload)

    assert isinstance(restored, FramePredictor)
    np.testing.assert_allclose(restored.model.predict_proba(val_texts), expected, atol=1e-6)
    again = cloudpickle.loads(cloudpickle.dumps(restored))  # an actor's copy can be sent on again
    np.testing.assert_allclose(again.model.predict_proba(val_texts), expected, atol=1e-6)
