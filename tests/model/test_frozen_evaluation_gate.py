"""The gate is fair to retrains (issue 17, ADR 0019): TF-IDF trained on the bundled data with seed 1, then
with seed 2, is a model of the same quality, and its gate compares both on the lineage's frozen evaluation
split, which neither trained on, so it passes. A model trained on a tenth of the data is still caught: its
own evaluation rows that the champion trained on are left out and counted, and on the rest it is
significantly worse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import TEXT, Snapshot, SnapshotStore
from deskpilot.data.splits import frozen_evaluation, text_keys
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.training.pipeline import RegisteredRun, train_and_register
from deskpilot.training.run import TrainingConfig
from deskpilot.training.seen import store_lookup
from tests.helpers import BUNDLED_DATA, NoRedaction

NAME = "triage"


def snapshot_of(path: Path, store: SnapshotStore) -> Snapshot:
    table = read_table(path)
    return store.create(table, validate_table(table, DataContract(label_column="category")), NoRedaction())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SnapshotStore:
    return SnapshotStore(tmp_path_factory.mktemp("snapshots"))


@pytest.fixture(scope="module")
def full(store: SnapshotStore) -> Snapshot:
    return snapshot_of(BUNDLED_DATA, store)


@pytest.fixture(scope="module")
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


@pytest.fixture(scope="module")
def champion(full: Snapshot, registry: InMemoryRegistry) -> RegisteredRun:
    run = train_and_register(full, TrainingConfig(family="tfidf", seed=1), registry, name=NAME)
    assert run.became_champion
    return run


def test_a_retrain_with_another_seed_passes_on_rows_neither_model_trained_on(
    full: Snapshot, registry: InMemoryRegistry, champion: RegisteredRun
) -> None:
    retrain = train_and_register(full, TrainingConfig(family="tfidf", seed=2), registry, name=NAME)
    decision = retrain.decision
    assert decision.passed, decision.reason()
    held_out = frozen_evaluation(full)
    rows = decision.rows
    assert rows is not None
    assert (rows.offered, rows.compared, rows.left_out) == (held_out.rows.size, held_out.rows.size, 0)
    assert (rows.champion_seen, rows.challenger_seen, rows.forced) == (0, 0, False)
    assert decision.compared_rows == held_out.rows.size
    assert decision.champion is not None
    assert decision.champion["comparison_unseen_by_both"] is True
    # neither model trained or was tuned on any compared row, and the seeds did split the rest differently
    keys = set(text_keys(full.frame[TEXT].iloc[held_out.rows]))
    for run in (champion, retrain):
        fitted = np.union1d(run.result.split.train, run.result.split.validation)
        assert not keys & set(text_keys(full.frame[TEXT].iloc[fitted]))
    assert not np.array_equal(champion.result.split.validation, retrain.result.split.validation)
    accuracy = next(r for r in decision.rules if r.kind == "relative" and r.metric == "accuracy")
    assert accuracy.measured is not None
    assert abs(accuracy.measured) < 0.02  # the same quality: a small difference either way


def test_a_model_trained_on_a_tenth_of_the_data_still_fails(
    full: Snapshot, store: SnapshotStore, registry: InMemoryRegistry, champion: RegisteredRun, tmp_path: Path
) -> None:
    frame = pd.read_csv(BUNDLED_DATA)
    parts = [g.sample(n=max(5, round(0.1 * len(g))), random_state=0) for _, g in frame.groupby("category")]
    tenth = pd.concat(parts)  # a tenth of each intent, at least the contract's five
    path = tmp_path / "tenth.csv"
    tenth.to_csv(path, index=False)
    small = snapshot_of(path, store)
    run = train_and_register(
        small, TrainingConfig(family="tfidf", seed=1), registry, name=NAME, snapshots=store_lookup(store)
    )
    decision = run.decision
    assert not decision.passed
    failed = {(r.kind, r.metric) for r in decision.failures}
    assert ("relative", "accuracy") in failed
    rows = decision.rows
    assert rows is not None
    # a new lineage: its own evaluation split, less the rows of it the champion trained or was tuned on
    own = frozen_evaluation(small)
    assert rows.offered == own.rows.size
    champion_saw = set(text_keys(full.frame[TEXT])) - frozen_evaluation(full).keys
    expected_seen = sum(key in champion_saw for key in text_keys(small.frame[TEXT].iloc[own.rows]))
    assert rows.champion_seen == expected_seen > 0
    assert rows.compared == rows.offered - expected_seen > 0
    assert decision.compared_rows == rows.compared
    assert decision.champion is not None
    assert decision.champion["comparison_unseen_by_both"] is True
    assert decision.champion["same_evaluation_split"] is False
    # the version's own record covers its whole frozen evaluation split; only the gate's pair is the subset
    assert run.evaluation.data["rows"] == run.result.split.evaluation.size == own.rows.size
    assert run.compared_evaluation is not None
    assert run.champion_evaluation is not None
    assert run.compared_evaluation.data["rows"] == run.champion_evaluation.data["rows"] == rows.compared
    assert rows.compared < run.evaluation.data["rows"]
