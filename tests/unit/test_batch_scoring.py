"""The batch job's model references: resolved once, a challenger distinct from the model, the rollout's
challenger only for the rollout's model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deskpilot.config import Settings
from deskpilot.domain import ModelRef, RoutingThreshold
from deskpilot.errors import UsageError
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from deskpilot.registry.base import ModelVersion
from deskpilot.workflows.scoring import BatchJob, score_batch
from tests.helpers import bundled_subset


@pytest.fixture(scope="module")
def model() -> TriageModel:
    frame = bundled_subset(labels=3, per_label=10)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist())
    return TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100))


class PromotingRegistry:
    """Aliases that move as soon as a model is loaded: a promotion while the job runs."""

    def __init__(self, model: TriageModel) -> None:
        self.model = model
        self.aliases = {"champion": "1", "challenger": "2"}
        self.loaded: list[str] = []

    def get(self, ref: ModelRef) -> ModelVersion:
        version = ref.version or self.aliases[ref.alias or ""]
        return ModelVersion(ref.name, version, created_at="2026-01-01")

    def load(self, ref: ModelRef) -> TriageModel:
        self.loaded.append(ref.uri)
        self.aliases = {"champion": "2", "challenger": "3"}
        return self.model


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.csv"
    pd.DataFrame({"id": ["a", "b"], "text": ["my card never arrived", "top up failed"]}).to_csv(
        path, index=False
    )
    return path


def test_the_report_names_the_versions_that_scored_even_if_an_alias_moves(
    model: TriageModel, tickets: Path, tmp_path: Path
) -> None:
    registry = PromotingRegistry(model)
    job = BatchJob(
        model_uri="models:/m@champion",
        challenger_uri="models:/m@challenger",
        input_path=tickets,
        output_path=tmp_path / "scores.csv",
        progress=False,
    )
    summary = score_batch(Settings(home=tmp_path / "home"), job, registry=registry)  # type: ignore[arg-type]
    assert registry.loaded == ["models:/m/1", "models:/m/2"]
    assert summary.comparison is not None
    assert (summary.comparison.champion, summary.comparison.challenger) == ("models:/m/1", "models:/m/2")


@pytest.mark.parametrize("challenger", ["models:/m/1", "models:/m@champion"])
def test_a_challenger_that_is_the_model_itself_is_refused(
    model: TriageModel, tickets: Path, tmp_path: Path, challenger: str
) -> None:
    registry = PromotingRegistry(model)
    job = BatchJob(
        model_uri="models:/m/1",
        challenger_uri=challenger,
        input_path=tickets,
        output_path=tmp_path / "scores.csv",
    )
    with pytest.raises(UsageError, match="the challenger is the same version as the model"):
        score_batch(Settings(home=tmp_path / "home"), job, registry=registry)  # type: ignore[arg-type]
    assert registry.loaded == []


def test_the_rollouts_challenger_is_refused_for_another_model(
    model: TriageModel, tickets: Path, tmp_path: Path
) -> None:
    registry = PromotingRegistry(model)
    settings = Settings(home=tmp_path / "home", model_name="configured")
    job = BatchJob(
        model_uri="models:/other/1",
        challenger_uri="rollout",
        input_path=tickets,
        output_path=tmp_path / "scores.csv",
    )
    with pytest.raises(UsageError, match="the rollout is that of configured, but --model names other"):
        score_batch(settings, job, registry=registry)  # type: ignore[arg-type]
    assert registry.loaded == []
