"""An ensemble of TF-IDF and embeddings through a real training run, saved and loaded as an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.models.artifact import TriageModel
from deskpilot.models.ensemble import EnsembleClassifier
from deskpilot.training.run import TrainingConfig, train_on_snapshot
from tests.helpers import NoRedaction, bundled_subset


def test_tfidf_plus_embed_ensemble(encoder_cache: Path, tmp_path: Path) -> None:
    bundled_subset(labels=6, per_label=25).to_csv(tmp_path / "d.csv", index=False)
    table = read_table(tmp_path / "d.csv")
    snapshot = SnapshotStore(tmp_path / "snaps").create(
        table, validate_table(table, DataContract()), NoRedaction()
    )
    result = train_on_snapshot(snapshot, TrainingConfig(family="ensemble", cache_dir=encoder_cache))
    ensemble = result.model.classifier
    assert isinstance(ensemble, EnsembleClassifier)
    assert [m.family for m in ensemble.members_] == ["tfidf", "embed"]
    assert abs(ensemble.weights_.sum() - 1.0) < 1e-9
    assert result.metrics["accuracy"] > 0.8
    result.model.save(tmp_path / "artifact")
    loaded = TriageModel.load(tmp_path / "artifact")
    texts = snapshot.frame["text"].head(8).tolist()
    np.testing.assert_allclose(loaded.predict_proba(texts), result.model.predict_proba(texts), atol=1e-6)
