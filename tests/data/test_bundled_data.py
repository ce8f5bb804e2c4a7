"""The bundled Banking77 data: it meets the contract, keeps its attribution, and splits cleanly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import LABEL, TEXT, Snapshot, SnapshotStore
from deskpilot.data.splits import find_leakage, split_frame
from tests.helpers import BUNDLED_DATA, NoRedaction

CONTRACT = DataContract(label_column="category")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    table = read_table(BUNDLED_DATA)
    store = SnapshotStore(tmp_path_factory.mktemp("snapshots"))
    return store.create(table, validate_table(table, CONTRACT), NoRedaction())


def test_bundled_data_meets_the_contract() -> None:
    report = validate_table(read_table(BUNDLED_DATA), CONTRACT)
    assert report.ok, [r.rule for r in report.errors]
    assert report.n_rows == 10_003
    assert len(report.label_counts) == 77
    assert min(report.label_counts.values()) >= 35


def test_attribution_travels_with_the_data() -> None:
    folder = BUNDLED_DATA.parent
    source = (folder / "SOURCE.md").read_text(encoding="utf-8")
    licence = (folder / "LICENSE.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in source
    assert "Attribution 4.0 International" in licence
    digest = hashlib.sha256(BUNDLED_DATA.read_bytes()).hexdigest()
    assert digest in source, "train.csv no longer matches the checksum its SOURCE.md records"


def test_bundled_split_is_stratified_and_leak_free(snapshot: Snapshot) -> None:
    frame = snapshot.frame
    split = split_frame(frame, digest=snapshot.digest, seed=0)
    assert frame[LABEL].iloc[split.validation].nunique() == 77
    assert 0.19 < split.validation.size / len(frame) < 0.21
    leakage = find_leakage(frame[TEXT].iloc[split.train], frame[TEXT].iloc[split.validation])
    assert leakage.clean


def test_bundled_snapshot_digest_is_stable(snapshot: Snapshot, tmp_path: Path) -> None:
    table = read_table(BUNDLED_DATA)
    again = SnapshotStore(tmp_path).create(table, validate_table(table, CONTRACT), NoRedaction())
    assert again.digest == snapshot.digest
