"""Every family goes through the full pipeline: evaluated, gated, registered with a report and a card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.training.pipeline import MODEL_CARD, REPORT_HTML, REPORT_MD, train_and_register
from deskpilot.training.run import TrainingConfig
from tests.helpers import NoRedaction, bundled_subset

FAMILIES: dict[str, dict[str, Any]] = {
    "tfidf": {},
    "embed": {},
    "finetune": {"epochs": 1, "batch_size": 16, "max_length": 32},
    "ensemble": {},
}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder = tmp_path_factory.mktemp("families")
    bundled_subset(labels=5, per_label=24).to_csv(folder / "d.csv", index=False)
    table = read_table(folder / "d.csv")
    return SnapshotStore(folder / "snaps").create(table, validate_table(table, DataContract()), NoRedaction())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_is_registered_with_report_and_card(
    snapshot: Snapshot, encoder_cache: Path, family: str
) -> None:
    registry = InMemoryRegistry()
    config = TrainingConfig(family=family, params=FAMILIES[family], cache_dir=encoder_cache)
    run = train_and_register(snapshot, config, registry, name="m")
    card = registry.document("m", run.version.version, MODEL_CARD)
    html = registry.document("m", run.version.version, REPORT_HTML)
    markdown = registry.document("m", run.version.version, REPORT_MD)
    assert card is not None
    assert html is not None
    assert markdown is not None
    assert f"`{family}`" in card
    assert "## Gate decision" in card
    assert "<img" in html
    assert "data:image/png;base64," in html
    assert run.evaluation.model["family"] == family
    assert run.decision.rules
    assert run.version.tags["deskpilot.gate"] == run.decision.outcome
