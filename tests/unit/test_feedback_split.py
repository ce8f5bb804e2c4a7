"""The loop's snapshot and split: the frozen evaluation split is kept, old rows keep the champion's side, new
rows get a seeded split of their own, flips relabel in place, the split is stored and read back, and training
on it records that the comparison rows are unseen by both models."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import METADATA_FILE, Snapshot, SnapshotStore
from deskpilot.data.splits import EVALUATION, Split, frozen_evaluation, split_around, split_frame
from deskpilot.data.text import normalize_texts
from deskpilot.errors import TrainingError
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.training.pipeline import split_identity, train_and_register
from deskpilot.training.run import PresetSplit, TrainingConfig, train_on_snapshot
from deskpilot.workflows.feedback.derive import (
    FLIPPED,
    FROM_FEEDBACK,
    FROM_SNAPSHOT,
    ORIGIN_COLUMN,
    SPLIT_COLUMN,
    derive_frame,
    label_index,
    model_split,
    stored_split,
)
from deskpilot.workflows.feedback.guard import Change
from deskpilot.workflows.feedback.verdicts import AUDIT_SAMPLE, Verdict, VerdictGroup
from tests.helpers import NoRedaction, bundled_subset

AT = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> tuple[SnapshotStore, Snapshot]:
    folder = tmp_path_factory.mktemp("loop-split")
    path = folder / "small.csv"
    bundled_subset(labels=4, per_label=25).to_csv(path, index=False)
    table = read_table(path)
    store = SnapshotStore(folder / "snaps")
    return store, store.create(table, validate_table(table, DataContract()), NoRedaction())


def change(text: str, label: str, previous: tuple[str, ...] = ()) -> Change:
    key = str(normalize_texts(pd.Series([text])).iloc[0])
    verdict = Verdict("acme", text, text, key, label, label, 0.5, "auto", AUDIT_SAMPLE, "m", "1", AT, AT)
    return Change(VerdictGroup(key, label, (verdict,)), previous)


def derived(parent: tuple[SnapshotStore, Snapshot], seed: int = 0) -> tuple[Snapshot, Split, list[Change]]:
    store, snap = parent
    labels = sorted(snap.metadata.label_counts)
    old = snap.frame["text"].iloc[0]
    changes = [change(f"brand new message {i}", labels[i % 4]) for i in range(20)]
    changes.append(change(old.upper(), labels[1], previous=(snap.frame["label"].iloc[0],)))
    held_out = frozen_evaluation(snap)
    split = split_around(snap.frame, held_out, digest=snap.digest, seed=seed)
    frame = derive_frame(snap, split, changes, seed=seed, validation_fraction=0.2, evaluation=held_out)
    lineage = {"kind": "feedback", "parent_digest": snap.digest, "evaluation": held_out.record()}
    child = store.derive(snap, frame, source="feedback:test", redactions={}, lineage=lineage)
    return child, split, changes


def test_old_rows_keep_their_side_flips_relabel_in_place_and_new_rows_split_by_label(
    parent: tuple[SnapshotStore, Snapshot],
) -> None:
    _, snap = parent
    child, split, changes = derived(parent)
    frame = child.frame
    side = dict(zip(frame["text"], frame[SPLIT_COLUMN], strict=True))
    assert {side[t] for t in snap.frame["text"].iloc[split.validation]} == {"validation"}
    assert {side[t] for t in snap.frame["text"].iloc[split.train]} == {"train"}
    assert {side[t] for t in snap.frame["text"].iloc[split.evaluation]} == {EVALUATION}
    assert frozen_evaluation(child).identity == frozen_evaluation(snap).identity  # kept as the lineage grows
    flipped = frame[frame[ORIGIN_COLUMN] == FLIPPED]
    assert flipped["label"].tolist() == [changes[-1].label]
    assert flipped["text"].tolist() == [snap.frame["text"].iloc[0]]  # the snapshot's own text, relabelled
    new = frame[frame[ORIGIN_COLUMN] == FROM_FEEDBACK]
    assert len(new) == 20
    assert new.groupby("label")[SPLIT_COLUMN].apply(lambda s: (s == "validation").sum()).tolist() == [1] * 4
    assert (frame[ORIGIN_COLUMN] == FROM_SNAPSHOT).sum() == len(snap.frame) - 1
    assert label_index(frame)[changes[-1].key] == frozenset({changes[-1].label})


def test_a_derived_snapshot_records_its_lineage_and_others_read_as_before(
    parent: tuple[SnapshotStore, Snapshot],
) -> None:
    store, snap = parent
    child, _, _ = derived(parent)
    again = store.get(child.digest)
    assert again.metadata.lineage == {
        "kind": "feedback",
        "parent_digest": snap.digest,
        "evaluation": frozen_evaluation(snap).record(),
    }
    assert again.metadata.source_format == "derived"
    assert again.metadata.source_sha256 == snap.digest
    assert again.metadata.rows == len(snap.frame) + 20
    assert "lineage" not in (snap.path / METADATA_FILE).read_text()
    store.verify(again)  # the digest covers the stored split


def test_the_split_is_read_back_from_the_column_a_derived_snapshot_stores(
    parent: tuple[SnapshotStore, Snapshot],
) -> None:
    _, snap = parent
    child, _, _ = derived(parent, seed=3)
    stored = stored_split(child, seed=3, validation_fraction=0.2)
    note = {"column": SPLIT_COLUMN}
    read = model_split(child, {"seed": 3, "validation_fraction": 0.2, "split": note})
    assert np.array_equal(read.validation, stored.validation)
    assert np.array_equal(read.evaluation, frozen_evaluation(child).rows)
    record = frozen_evaluation(snap).record()
    computed = model_split(snap, {"seed": 3, "validation_fraction": 0.2, "evaluation_split": record})
    expected = split_around(snap.frame, frozen_evaluation(snap), digest=snap.digest, seed=3)
    assert np.array_equal(computed.validation, expected.validation)
    legacy = model_split(snap, {"seed": 3, "validation_fraction": 0.2})  # a model from before frozen splits
    assert np.array_equal(legacy.validation, split_frame(snap.frame, digest=snap.digest, seed=3).validation)


def test_training_on_a_preset_split_uses_it_and_records_its_note(
    parent: tuple[SnapshotStore, Snapshot],
) -> None:
    child, _, _ = derived(parent)
    split = stored_split(child, seed=0, validation_fraction=0.2)
    note = {"kind": "feedback", "column": SPLIT_COLUMN, "parent": {"dataset_digest": "x"}}
    result = train_on_snapshot(child, TrainingConfig(family="tfidf", split=PresetSplit(split, note)))
    assert result.split is split
    assert result.model.manifest.lineage["split"] == note
    assert result.model.manifest.lineage["validation_rows"] == split.validation.size
    plain = train_on_snapshot(child, TrainingConfig(family="tfidf"))
    assert "split" not in plain.model.manifest.lineage


def test_a_preset_split_that_does_not_fit_the_snapshot_is_refused(
    parent: tuple[SnapshotStore, Snapshot],
) -> None:
    _, snap = parent
    good = split_around(snap.frame, frozen_evaluation(snap), digest=snap.digest, seed=0)
    held_out = good.evaluation
    everything_else = np.setdiff1d(np.arange(len(snap.frame)), held_out)
    legacy = split_frame(snap.frame, digest=snap.digest, seed=0)  # trains on evaluation rows: refused
    wrong = [
        (Split("0" * 64, 0, 0.2, good.train, good.validation, held_out), "is of snapshot 000000000000"),
        (Split(snap.digest, 0, 0.2, good.train, good.train[:3], held_out), "on exactly one side"),
        (Split(snap.digest, 0, 0.2, good.train[1:], good.validation, held_out), "on exactly one side"),
        (Split(snap.digest, 0, 0.2, everything_else, good.train[:0], held_out), "on both sides"),
        (Split(snap.digest, 0, 0.2, legacy.train, legacy.validation), "frozen evaluation split"),
    ]
    for split, message in wrong:
        with pytest.raises(TrainingError, match=message):
            train_on_snapshot(snap, TrainingConfig(family="tfidf", split=PresetSplit(split, {})))


def test_the_gate_records_when_the_comparison_rows_are_unseen_by_both_models(
    parent: tuple[SnapshotStore, Snapshot], tmp_path: Path
) -> None:
    _, snap = parent
    child, _, _ = derived(parent)
    registry = InMemoryRegistry()
    champion = train_and_register(snap, TrainingConfig(family="tfidf"), registry, name="m")
    kept = {"column": SPLIT_COLUMN, "parent": split_identity(champion.result.model.manifest.lineage)}
    split = stored_split(child, seed=0, validation_fraction=0.2)
    loop = train_and_register(
        child, TrainingConfig(family="tfidf", split=PresetSplit(split, kept)), registry, name="m"
    )
    assert loop.decision.champion is not None
    assert loop.decision.champion["comparison_unseen_by_both"] is True
    assert loop.decision.champion["same_evaluation_split"] is True
    assert loop.decision.rows is not None
    assert loop.decision.rows.left_out == 0
    assert loop.champion_evaluation is not None
    other = train_and_register(snap, TrainingConfig(family="tfidf", seed=5), registry, name="m")
    assert other.decision.champion is not None
    assert other.decision.champion["comparison_unseen_by_both"] is True  # another seed, the same frozen split
    assert other.decision.champion["same_evaluation_split"] is True
