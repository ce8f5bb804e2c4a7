"""A training run on a snapshot: reproducible metrics, thresholds, lineage, registration, champion rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.data.splits import frozen_evaluation
from deskpilot.domain import ModelRef
from deskpilot.errors import TrainingError
from deskpilot.registry.base import CHALLENGER, CHAMPION
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.training.pipeline import train_and_register
from deskpilot.training.run import TrainingConfig, train_on_snapshot
from tests.helpers import NoRedaction, bundled_subset


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder = tmp_path_factory.mktemp("data")
    path = folder / "small.csv"
    bundled_subset(labels=6, per_label=30).to_csv(path, index=False)
    table = read_table(path)
    return SnapshotStore(folder / "snaps").create(table, validate_table(table, DataContract()), NoRedaction())


def test_same_data_seed_and_config_give_the_same_metrics(snapshot: Snapshot) -> None:
    config = TrainingConfig(family="tfidf", seed=3)
    first = train_on_snapshot(snapshot, config)
    second = train_on_snapshot(snapshot, config)
    drop = {"fit_seconds"}
    assert {k: v for k, v in first.metrics.items() if k not in drop} == {
        k: v for k, v in second.metrics.items() if k not in drop
    }
    assert first.model.manifest.routing == second.model.manifest.routing


def test_run_records_lineage_and_routing(snapshot: Snapshot) -> None:
    result = train_on_snapshot(snapshot, TrainingConfig(family="tfidf", seed=0, params={"c": 4.0}))
    manifest = result.model.manifest
    assert manifest.lineage["dataset_digest"] == snapshot.digest
    assert manifest.lineage["params"]["c"] == 4.0
    sides = ("train_rows", "validation_rows", "evaluation_rows")
    assert sum(manifest.lineage[side] for side in sides) == 180
    held_out = frozen_evaluation(snapshot)
    assert manifest.lineage["evaluation_split"] == held_out.record()
    assert manifest.lineage["evaluation_rows"] == held_out.rows.size == 18  # 10% of each label's 30
    assert np.array_equal(result.split.evaluation, held_out.rows)
    assert np.intersect1d(held_out.rows, np.union1d(result.split.train, result.split.validation)).size == 0
    assert manifest.routing["target_precision"] == 0.97
    assert 0.0 <= result.metrics["auto_coverage"] <= 1.0
    assert result.metrics["accuracy"] > 0.8


def test_bad_hyperparameter_is_a_training_error(snapshot: Snapshot) -> None:
    with pytest.raises(TrainingError, match="bad parameters for the tfidf family"):
        train_on_snapshot(snapshot, TrainingConfig(family="tfidf", params={"depth": 3}))


def test_first_version_becomes_champion_only_once(snapshot: Snapshot) -> None:
    registry = InMemoryRegistry()
    config = TrainingConfig(family="tfidf")
    first = train_and_register(snapshot, config, registry, name="m")
    second = train_and_register(snapshot, config, registry, name="m")
    assert first.became_champion
    assert CHAMPION in first.version.aliases
    assert not second.became_champion
    assert second.decision.passed  # the same data and seed: not significantly different
    assert second.alias == CHALLENGER
    assert registry.alias_version("m", CHALLENGER) == second.version.version
    assert registry.alias_version("m", CHAMPION) == first.version.version
    assert [v.version for v in registry.versions("m")] == ["2", "1"]
    assert second.version.tags["deskpilot.dataset_digest"] == snapshot.digest


def test_registered_model_loads_and_predicts_the_same(snapshot: Snapshot, tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    run = train_and_register(snapshot, TrainingConfig(family="tfidf"), registry, name="m")
    loaded = registry.load(ModelRef.parse(run.version.uri))
    texts = snapshot.frame["text"].head(5).tolist()
    assert [p.intent for p in loaded.predict(texts)] == [p.intent for p in run.result.model.predict(texts)]


def test_a_champion_whose_split_cannot_be_rebuilt_has_unknown_rows(snapshot: Snapshot) -> None:
    from deskpilot.errors import SnapshotError
    from deskpilot.training.seen import model_split, seen_by

    lineage = dict(train_on_snapshot(snapshot, TrainingConfig(family="tfidf", seed=0)).model.manifest.lineage)
    assert seen_by(lineage, lambda _digest: snapshot).keys is not None
    other = {**lineage, "evaluation_split": {**lineage["evaluation_split"], "identity": "0" * 64}}
    seen = seen_by(other, lambda _digest: snapshot)
    assert seen.keys is None  # never counted unseen on a guess
    assert seen.why_unknown == "its split cannot be rebuilt: identity mismatch"
    with pytest.raises(SnapshotError, match="identity mismatch"):
        model_split(snapshot, other)


def test_a_champion_that_knows_none_of_the_evaluation_labels_fails_the_gate_with_the_reason(
    tmp_path: Path,
) -> None:
    frame = bundled_subset(labels=8, per_label=30)
    labels = sorted(frame["label"].unique())
    store = SnapshotStore(tmp_path / "snaps")
    snapshots = []
    for part, name in ((labels[:4], "old.csv"), (labels[4:], "new.csv")):
        path = tmp_path / name
        frame[frame["label"].isin(part)].to_csv(path, index=False)
        table = read_table(path)
        snapshots.append(store.create(table, validate_table(table, DataContract()), NoRedaction()))
    registry = InMemoryRegistry()
    first = train_and_register(snapshots[0], TrainingConfig(family="tfidf"), registry, name="m")
    assert first.became_champion
    run = train_and_register(snapshots[1], TrainingConfig(family="tfidf"), registry, name="m")
    assert not run.decision.passed
    assert run.champion_evaluation is None
    assert run.evaluation.data["rows"] == run.result.split.evaluation.size
    failed = [r for r in run.decision.failures if r.kind == "relative"]
    assert failed
    assert all("knows" in r.detail and "cannot be compared" in r.detail for r in failed)
    assert run.decision.champion is not None
    assert run.decision.champion["comparison_unseen_by_both"] is False


def test_retrain_carries_an_exclusion_forward_only_while_its_audit_is_unchanged(tmp_path: Path) -> None:
    import hashlib
    import json

    from deskpilot.workflows.feedback.retrain import carried_exclusion

    audit = tmp_path / "label_audit.json"
    audit.write_text(json.dumps({"rows": 3, "flagged": [{"key": "0123456789abcdef", "given_label": "a"}]}))
    digest = hashlib.sha256(audit.read_bytes()).hexdigest()
    lineage = {"excluded": {"source": str(audit), "sha256": digest, "flagged": 1}}
    assert carried_exclusion({}) == (None, None)  # nothing was excluded: nothing to carry
    exclude, dropped = carried_exclusion(lineage)
    assert dropped is None
    assert exclude is not None
    assert exclude.pairs == frozenset({("0123456789abcdef", "a")})
    audit.write_text(json.dumps({"rows": 3, "flagged": []}))
    exclude, dropped = carried_exclusion(lineage)
    assert exclude is None
    assert dropped is not None
    assert "changed since the champion was trained" in dropped["reason"]
    audit.unlink()
    exclude, dropped = carried_exclusion(lineage)
    assert exclude is None
    assert dropped is not None
    assert "cannot be read" in dropped["reason"]
