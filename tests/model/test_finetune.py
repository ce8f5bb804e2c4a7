"""The fine-tune family on a tiny slice (one short epoch): contract, ONNX export fidelity, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.models.finetune import MODEL_FILE, FinetunedClassifier
from tests.helpers import bundled_subset


@pytest.fixture(scope="module")
def fitted() -> tuple[FinetunedClassifier, list[str], list[str]]:
    frame = bundled_subset(labels=4, per_label=24)
    val = frame.groupby("label").head(6)
    train = frame.drop(val.index)
    model = FinetunedClassifier(epochs=2, batch_size=16, max_length=32, learning_rate=2e-4, patience=1)
    assert not hasattr(model, "classes_")
    val_texts, val_labels = val["text"].tolist(), val["label"].tolist()
    returned = model.fit(train["text"].tolist(), train["label"].tolist(), validation=(val_texts, val_labels))
    assert returned is model
    return model, val_texts, val_labels


def test_learns_and_keeps_the_best_epoch(fitted: tuple[FinetunedClassifier, list[str], list[str]]) -> None:
    model, val_texts, val_labels = fitted
    assert 1 <= model.best_epoch_ <= 2
    assert [h["epoch"] for h in model.history_][: model.best_epoch_] == list(range(1, model.best_epoch_ + 1))
    accuracy = (model.predict(val_texts) == np.asarray(val_labels, dtype=object)).mean()
    assert accuracy > 0.5, "four intents, two short epochs: well above the 25% of chance"


def test_onnx_export_matches_torch(fitted: tuple[FinetunedClassifier, list[str], list[str]]) -> None:
    assert fitted[0].onnx_max_abs_diff_ < 1e-3


def test_round_trip_needs_no_torch_objects(
    fitted: tuple[FinetunedClassifier, list[str], list[str]], tmp_path: Path
) -> None:
    model, val_texts, val_labels = fitted
    model.calibrate(val_texts, val_labels).save(tmp_path / "m")
    assert (tmp_path / "m" / MODEL_FILE).is_file()
    loaded = FinetunedClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(val_texts), model.predict_proba(val_texts), atol=1e-6)
    assert loaded.get_params() == model.get_params()
