"""Behavioral checks of the TF-IDF family trained on the bundled data (in the spirit of CheckList).

Minimum functionality: clear, hand-written messages get their obvious intent. Invariance: casing,
punctuation, typos, names, amounts and PII placeholders do not change the intent. Held-out intents:
messages of intents the model never saw mostly fall below the routing threshold and go to a person.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import LABEL, TEXT, Snapshot, SnapshotStore
from deskpilot.domain import Route
from deskpilot.models.artifact import TriageModel
from deskpilot.training.run import TrainingConfig, train_on_snapshot
from tests.helpers import BUNDLED_DATA, NoRedaction

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "cases" / "banking77.jsonl").read_text().splitlines()
]
HELD_OUT = ["card_swallowed", "terminate_account", "age_limit", "exchange_via_app", "lost_or_stolen_phone"]


def snapshot_of(path: Path, root: Path) -> Snapshot:
    table = read_table(path)
    report = validate_table(table, DataContract(label_column="category"))
    return SnapshotStore(root).create(table, report, NoRedaction())


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TriageModel:
    snapshot = snapshot_of(BUNDLED_DATA, tmp_path_factory.mktemp("snaps"))
    return train_on_snapshot(snapshot, TrainingConfig(family="tfidf")).model


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[TriageModel, list[str]]:
    import pandas as pd

    folder = tmp_path_factory.mktemp("held-out")
    frame = pd.read_csv(BUNDLED_DATA)
    frame[~frame["category"].isin(HELD_OUT)].to_csv(folder / "known.csv", index=False)
    unseen = frame.loc[frame["category"].isin(HELD_OUT), "text"].tolist()
    snapshot = snapshot_of(folder / "known.csv", folder / "snaps")
    return train_on_snapshot(snapshot, TrainingConfig(family="tfidf")).model, unseen


def cases(kind: str) -> list[dict[str, Any]]:
    return [c for c in CASES if c["type"] == kind]


def test_minimum_functionality(model: TriageModel) -> None:
    mft = cases("mft")
    predicted = [p.intent for p in model.predict([c["text"] for c in mft])]
    failures = [
        (c["text"], c["expected"], p) for c, p in zip(mft, predicted, strict=True) if p != c["expected"]
    ]
    assert len(failures) / len(mft) <= 0.15, failures


def test_invariance(model: TriageModel) -> None:
    broken = []
    for case in cases("inv"):
        intents = {p.intent for p in model.predict(case["texts"])}
        if len(intents) > 1:
            broken.append((case["label"], case["texts"], intents))
    # TF-IDF matches surface forms, so typos and rephrasings can move it: measured 5 of 8 sets hold on the
    # bundled data. The floor keeps it from getting worse; the embedding families are held to more.
    assert len(broken) <= 3, broken


def test_confidence_is_calibrated_and_routing_is_consistent(model: TriageModel) -> None:
    threshold = model.manifest.threshold
    assert threshold is not None
    assert 0.0 < threshold < 1.0
    assert model.manifest.routing["precision"] >= 0.97
    predictions = model.predict(["my card has not arrived yet", "asdf qwerty zxcv"])
    assert model.route_for(predictions[0].confidence) is Route.AUTO
    assert model.route_for(predictions[1].confidence) is Route.HUMAN


def test_messages_of_unseen_intents_mostly_go_to_a_person(held_out: tuple[TriageModel, list[str]]) -> None:
    model, unseen = held_out
    assert not set(HELD_OUT) & set(model.classes)
    routes = Counter(model.route_for(p.confidence) for p in model.predict(unseen))
    human_share = routes[Route.HUMAN] / len(unseen)
    # measured: 74% of the 518 messages of the five held-out intents go to a person with TF-IDF alone
    assert human_share >= 0.65, (
        f"only {human_share:.0%} of {len(unseen)} unseen-intent messages went to a person"
    )


def test_snapshot_columns_are_canonical(tmp_path: Path) -> None:
    snapshot = snapshot_of(BUNDLED_DATA, tmp_path)
    assert list(snapshot.frame.columns)[:2] == [TEXT, LABEL]
