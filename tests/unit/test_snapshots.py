"""Snapshots: order-independent digests, immutability, atomic writes, verification."""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import DATA_FILE, Snapshot, SnapshotStore, content_digest
from deskpilot.errors import (
    ContractViolationError,
    EmptyDatasetError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
)
from tests.helpers import WriteRows, labelled_rows

CONTRACT = DataContract(min_examples_per_class=2)


class UppercaseDigits:
    """A stand-in redactor: replaces the word 'secret' and counts it, so tests can see redaction applied."""

    def redact_many(self, texts: Iterable[str]) -> tuple[list[str], Counter[str]]:
        out, counts = [], Counter[str]()
        for text in texts:
            if "secret" in text:
                counts["SECRET"] += text.count("secret")
            out.append(text.replace("secret", "<SECRET>"))
        return out, counts


def snapshot_of(path: Path, store: SnapshotStore, *, drop_invalid: bool = False) -> Snapshot:
    table = read_table(path)
    return store.create(table, validate_table(table, CONTRACT), UppercaseDigits(), drop_invalid=drop_invalid)


def test_digest_ignores_row_order_and_source_format(write_rows: WriteRows, tmp_path: Path) -> None:
    rows = labelled_rows(3, 4)
    store = SnapshotStore(tmp_path / "snaps")
    a = snapshot_of(write_rows("a.csv", rows), store)
    b = snapshot_of(write_rows("b.jsonl", list(reversed(rows))), store)
    assert a.digest == b.digest
    assert a.path == b.path
    assert len(store.all()) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows[0].update(text="a different text"),
        lambda rows: rows[0].update(label="intent_2"),
        lambda rows: rows.append(dict(rows[0])),
        lambda rows: [r.update(channel="email") for r in rows],
    ],
    ids=["text", "label", "duplicate-row", "extra-column"],
)
def test_any_change_gives_a_new_digest(write_rows: WriteRows, tmp_path: Path, change: object) -> None:
    rows = labelled_rows(3, 4)
    store = SnapshotStore(tmp_path / "snaps")
    before = snapshot_of(write_rows("a.csv", rows), store)
    changed = [dict(r) for r in rows]
    change(changed)  # type: ignore[operator]
    after = snapshot_of(write_rows("b.csv", changed), store)
    assert after.digest != before.digest


def test_content_digest_is_a_pure_function_of_the_multiset() -> None:
    frame = pd.DataFrame({"text": ["b", "a", "a"], "label": ["y", "x", "x"]})
    assert content_digest(frame) == content_digest(frame.iloc[[2, 0, 1]].reset_index(drop=True))
    assert content_digest(frame) != content_digest(frame.iloc[[0, 1]])


def test_snapshot_stores_trimmed_redacted_rows_and_lineage(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label,channel\n  my secret pin  ,a\nhello,a\nhi,b\nhey,b\n", encoding="utf-8")
    snap = snapshot_of(path, SnapshotStore(tmp_path / "snaps"))
    frame = snap.frame
    assert list(frame.columns) == ["text", "label", "channel"]
    assert "my <SECRET> pin" in frame["text"].tolist()
    meta = snap.metadata
    assert meta.rows == 4
    assert meta.redactions == {"SECRET": 1}
    assert meta.label_counts == {"a": 2, "b": 2}
    assert meta.source_file == str(path)
    assert meta.source_format == "csv"
    assert len(meta.source_sha256) == 64
    assert meta.contract["min_examples_per_class"] == 2
    assert meta.contract_version == "1"
    assert meta.created_at.endswith("+00:00")


def test_snapshot_files_are_read_only(write_rows: WriteRows, tmp_path: Path) -> None:
    snap = snapshot_of(write_rows("a.csv", labelled_rows()), SnapshotStore(tmp_path / "snaps"))
    mode = (snap.path / DATA_FILE).stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_invalid_data_is_refused_unless_dropped(write_rows: WriteRows, tmp_path: Path) -> None:
    rows = [*labelled_rows(2, 3), {"text": "", "label": "intent_0"}]
    store = SnapshotStore(tmp_path / "snaps")
    path = write_rows("a.csv", rows)
    with pytest.raises(ContractViolationError, match="--drop-invalid"):
        snapshot_of(path, store)
    assert store.all() == []
    snap = snapshot_of(path, store, drop_invalid=True)
    assert snap.metadata.rows == 6
    assert snap.metadata.dropped_invalid_rows == 1


def test_nothing_left_after_dropping_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\n ,a\n ,b\n", encoding="utf-8")
    with pytest.raises(EmptyDatasetError, match="no valid rows"):
        snapshot_of(path, SnapshotStore(tmp_path / "snaps"), drop_invalid=True)


def test_failed_write_leaves_nothing_behind(
    write_rows: WriteRows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "snaps"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("deskpilot.data.snapshots.write_table_atomic", disk_full)
    with pytest.raises(SnapshotError, match="No space left"):
        snapshot_of(write_rows("a.csv", labelled_rows()), SnapshotStore(root))
    assert list(root.iterdir()) == []


def test_get_by_prefix_and_not_found(write_rows: WriteRows, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    snap = snapshot_of(write_rows("a.csv", labelled_rows()), store)
    assert store.get(snap.digest[:8]).digest == snap.digest
    with pytest.raises(SnapshotNotFoundError):
        store.get("0000000000")
    with pytest.raises(SnapshotNotFoundError):
        store.get(snap.digest[:3])


def test_verify_detects_a_modified_snapshot(write_rows: WriteRows, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    snap = snapshot_of(write_rows("a.csv", labelled_rows()), store)
    store.verify(snap)
    data = snap.path / DATA_FILE
    data.chmod(0o644)
    tampered = snap.frame.copy()
    tampered.loc[0, "label"] = "intent_2"
    tampered.to_parquet(data, index=False)
    with pytest.raises(SnapshotCorruptError, match="was modified"):
        store.verify(store.get(snap.digest))
