"""Evaluation and gating of real tfidf models on a slice of the bundled data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.evaluation.behavioral import BehavioralSuite, GeneratedSpec
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import decide
from deskpilot.evaluation.model_card import render_model_card
from deskpilot.evaluation.policy import load_policy
from deskpilot.models.artifact import TriageModel
from deskpilot.training.pipeline import evaluation_data
from deskpilot.training.run import TrainingConfig, TrainingResult, train_on_snapshot
from tests.helpers import NoRedaction, bundled_subset

OPTIONS = EvaluationOptions(n_boot=300, latency_sample=10)
GENERATED = BehavioralSuite(source="<generated>", generated=GeneratedSpec(sample=60))


def snapshot_of(frame_rows: int, folder: Path, name: str) -> Snapshot:
    frame = bundled_subset(labels=8, per_label=60)
    frame["channel"] = np.where(np.arange(len(frame)) % 3 == 0, "email", "chat")
    if frame_rows < len(frame):
        frame = frame.groupby("label").head(frame_rows // 8)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    table = read_table(path)
    return SnapshotStore(folder / "snaps").create(table, validate_table(table, DataContract()), NoRedaction())


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, TrainingResult]:
    snapshot = snapshot_of(10_000, tmp_path_factory.mktemp("full"), "full")
    return snapshot, train_on_snapshot(snapshot, TrainingConfig(family="tfidf"))


@pytest.fixture(scope="module")
def evaluated(full: tuple[Snapshot, TrainingResult]) -> tuple[EvaluationData, Evaluation]:
    snapshot, result = full
    data = evaluation_data(snapshot, result.split.evaluation)
    return data, evaluate(result.model, data, suite=GENERATED, options=OPTIONS)


def test_headline_metrics_match_scikit_learn(evaluated: tuple[EvaluationData, Evaluation]) -> None:
    data, evaluation = evaluated
    rows = evaluation.rows
    assert evaluation.headline["accuracy"].value == pytest.approx(
        accuracy_score(data.labels, list(rows.predicted))
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        data.labels, list(rows.predicted), labels=evaluation.labels, zero_division=0
    )
    by_label = {c.label: c for c in evaluation.per_class}
    for i, label in enumerate(evaluation.labels):
        assert by_label[label].f1 == pytest.approx(f1[i])
        assert by_label[label].precision == pytest.approx(precision[i])
        assert by_label[label].recall == pytest.approx(recall[i])
        assert by_label[label].support == support[i]
    assert [c.f1 for c in evaluation.per_class] == sorted(c.f1 for c in evaluation.per_class)
    assert evaluation.confusion.sum() == len(data.labels)
    for interval in evaluation.headline.values():
        assert interval.low <= interval.value <= interval.high


def test_slices_cost_and_behavioral_results(evaluated: tuple[EvaluationData, Evaluation]) -> None:
    _, evaluation = evaluated
    columns = {s.column for s in evaluation.slices}
    assert {"length", "channel"} <= columns
    channel = {s.value: s.n for s in evaluation.slices if s.column == "channel"}
    assert sum(channel.values()) == evaluation.data["scored_rows"]
    assert evaluation.cost.latency_p50_ms > 0
    assert evaluation.cost.cost_per_1k >= 0
    assert evaluation.behavioral is not None
    assert 0.0 <= evaluation.behavioral.pass_rates["inv"] <= 1.0
    payload = evaluation.to_dict()
    assert set(payload["metrics"]) == {"accuracy", "macro_f1", "auto_coverage", "auto_precision", "ece"}
    assert payload["unseen_labels"]["rows"] == 0


def test_labels_the_model_never_saw_are_reported_not_scored(full: tuple[Snapshot, TrainingResult]) -> None:
    _, result = full
    known = bundled_subset(labels=8, per_label=60).sample(40, random_state=1)
    unseen = bundled_subset(labels=12, per_label=20)
    unseen = unseen[~unseen["label"].isin(result.model.classes)]
    data = EvaluationData(
        texts=[*known["text"], *unseen["text"]], labels=[*known["label"], *unseen["label"]], source="mixed"
    )
    evaluation = evaluate(result.model, data, options=OPTIONS)
    assert evaluation.data["scored_rows"] == 40
    assert evaluation.unseen_labels["rows"] == len(unseen)
    assert set(evaluation.unseen_labels["labels"]) == set(unseen["label"])
    assert 0.0 <= evaluation.unseen_labels["routed_human_share"] <= 1.0
    with pytest.raises(ValueError, match="none of the evaluation labels"):
        evaluate(
            result.model, EvaluationData(list(unseen["text"]), list(unseen["label"]), "x"), options=OPTIONS
        )


def test_worse_challenger_fails_and_a_retrain_passes(
    full: tuple[Snapshot, TrainingResult], evaluated: tuple[EvaluationData, Evaluation], tmp_path: Path
) -> None:
    snapshot, _ = full
    data, champion = evaluated
    policy = load_policy()
    retrain = train_on_snapshot(snapshot, TrainingConfig(family="tfidf"))
    same = decide(evaluate(retrain.model, data, suite=GENERATED, options=OPTIONS), champion, policy)
    assert same.passed, same.table()
    assert all(r.measured == 0.0 for r in same.rules if r.kind == "relative")
    # a model that saw only 8 examples per label, scored on the champion's frozen evaluation rows
    small = train_on_snapshot(snapshot_of(64, tmp_path, "small"), TrainingConfig(family="tfidf"))
    weak = evaluate(small.model, data, suite=GENERATED, options=OPTIONS)
    worse = decide(weak, champion, policy)
    assert not worse.passed
    failed = {r.metric for r in worse.failures if r.kind == "relative"}
    assert "accuracy" in failed
    assert "significantly worse" in worse.reason()


def test_model_card_has_every_section(
    full: tuple[Snapshot, TrainingResult], evaluated: tuple[EvaluationData, Evaluation]
) -> None:
    snapshot, result = full
    _, evaluation = evaluated
    decision = decide(evaluation, None, load_policy())
    card = render_model_card(
        title="models:/m/1",
        evaluation=evaluation,
        lineage=result.model.manifest.lineage,
        label_counts=snapshot.metadata.label_counts,
        decision=decision,
    )
    for section in (
        "## Intended use",
        "## Data",
        "## Training",
        "## Evaluation metrics",
        "## Routing threshold",
        "## Known weak intents and slices",
        "## Behavioral tests",
        "## Limitations",
        "## Gate decision",
    ):
        assert section in card
    assert snapshot.digest in card
    assert f"{evaluation.headline['accuracy'].value:.4f}" in card


def test_a_model_with_no_threshold_routes_nothing(full: tuple[Snapshot, TrainingResult]) -> None:
    snapshot, result = full
    manifest = result.model.manifest
    never = TriageModel(
        result.model.classifier, type(manifest)(**{**manifest.__dict__, "routing": {"threshold": None}})
    )
    evaluation = evaluate(never, evaluation_data(snapshot, result.split.evaluation), options=OPTIONS)
    assert evaluation.headline["auto_coverage"].value == 0.0
