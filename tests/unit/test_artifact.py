"""The artifact format: build, save, load, routing, and clear errors for broken directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deskpilot.domain import Route, RoutingThreshold
from deskpilot.errors import ArtifactError, UnknownFamilyError
from deskpilot.models.artifact import (
    MANIFEST_FILE,
    MODEL_DIR,
    TriageModel,
    family_class,
    predictions_from_proba,
)
from deskpilot.models.tfidf import TfidfClassifier
from tests.helpers import bundled_subset

ROUTING = RoutingThreshold(threshold=0.6, target_precision=0.97, coverage=0.8, precision=0.98, n=100)


@pytest.fixture(scope="module")
def triage(tmp_path_factory: pytest.TempPathFactory) -> tuple[TriageModel, Path]:
    frame = bundled_subset(labels=4, per_label=25)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist())
    model = TriageModel.build(classifier, ROUTING, lineage={"seed": 0}, metrics={"accuracy": 1.0})
    path = tmp_path_factory.mktemp("artifact")
    model.save(path)
    return model, path


def test_round_trip_keeps_predictions_and_manifest(triage: tuple[TriageModel, Path]) -> None:
    model, path = triage
    loaded = TriageModel.load(path)
    texts = ["my card has not arrived", "how do I top up"]
    assert loaded.manifest == model.manifest
    assert [p.intent for p in loaded.predict(texts)] == [p.intent for p in model.predict(texts)]
    assert loaded.manifest.threshold == 0.6


def test_routes_on_the_threshold(triage: tuple[TriageModel, Path]) -> None:
    model, _ = triage
    assert model.route_for(0.6) is Route.AUTO
    assert model.route_for(0.59) is Route.HUMAN
    never = TriageModel.build(model.classifier, RoutingThreshold(None, 0.97, 0.0, None, 10))
    assert never.route_for(1.0) is Route.HUMAN


def test_top_k_predictions_by_hand() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    first, second = predictions_from_proba(probs, ["a", "b", "c"], top_k=2)
    assert (first.intent, first.confidence) == ("b", 0.7)
    assert [(a.intent, a.confidence) for a in first.alternatives] == [("c", 0.2)]
    assert second.intent == "a"
    assert [a.intent for a in second.alternatives] == ["b"]


def test_empty_input_gives_no_predictions(triage: tuple[TriageModel, Path]) -> None:
    assert triage[0].predict([]) == []


def test_unknown_family_is_a_usage_error() -> None:
    with pytest.raises(UnknownFamilyError, match="choose one of tfidf"):
        family_class("gpt")


def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda p: (p / MANIFEST_FILE).unlink(), "not a DeskPilot model"),
        (lambda p: (p / MANIFEST_FILE).write_text("{not json"), "unreadable manifest"),
        (lambda p: _edit_manifest(p, family="quantum"), "unknown model family"),
        (lambda p: _edit_manifest(p, format_version=99), "newer than this DeskPilot"),
        (lambda p: _edit_manifest(p, classes=["x", "y"]), "do not match"),
        (lambda p: (p / MODEL_DIR / "pipeline.skops").write_bytes(b"garbage"), "unreadable"),
        (lambda p: (p / MODEL_DIR / "params.json").unlink(), "unreadable"),
    ],
)
def test_broken_artifacts_raise_artifact_error(
    triage: tuple[TriageModel, Path], tmp_path: Path, breakage: object, message: str
) -> None:
    broken = _copy(triage[1], tmp_path / "broken")
    breakage(broken)  # type: ignore[operator]
    with pytest.raises(ArtifactError, match=message):
        TriageModel.load(broken)


def _edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
