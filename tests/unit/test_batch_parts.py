"""What the driver checks before scoring: columns per part, one column set per job, exact row counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deskpilot.batch.parts import count_part, inspect_parts, jsonl_keys
from deskpilot.batch.predict import score_file
from deskpilot.batch.predictor import cell_text
from deskpilot.domain import RoutingThreshold
from deskpilot.errors import DataFormatError, MissingColumnError
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from tests.helpers import bundled_subset


@pytest.fixture(scope="module")
def model() -> TriageModel:
    frame = bundled_subset(labels=3, per_label=10)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist())
    return TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100))


def jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
        (7.0, "7"),
        (np.int64(12), "12"),
        (2.5, "2.5"),
        ("x", "x"),
    ],
)
def test_cells_keep_their_text_form(value: object, text: str | None) -> None:
    assert cell_text(value) == text


def test_jsonl_keys_are_found_in_any_record(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", [{"id": 1}, {"note": 'the word "text" in a value'}, {"text": "hi"}])
    assert jsonl_keys(path, ["text", "id", "label"]) == ["id", "text"]


def test_the_local_engine_writes_one_column_set_when_ids_appear_late(
    model: TriageModel, tmp_path: Path
) -> None:
    source = jsonl(
        tmp_path / "in.jsonl", [{"text": "card never arrived"}, {"id": 7, "text": "top up failed"}]
    )
    score_file(model, source, tmp_path / "out.csv", batch_rows=1)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(out.columns)[:2] == ["id", "text"]
    assert out["id"].tolist() == ["", "7"]
    assert out["text"].tolist() == ["card never arrived", "top up failed"]


def test_a_jsonl_file_where_no_record_has_text_is_refused(model: TriageModel, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
    with pytest.raises(
        MissingColumnError, match=r"in\.jsonl: no column 'text'; the file has no record with it"
    ):
        score_file(model, source, tmp_path / "out.csv")


def test_rows_are_counted_as_a_reader_sees_them(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text(' id , text \n1,"two\nlines, one row"\n\n2,plain\n', encoding="utf-8")
    layout = inspect_parts([csv], text_column="text", id_column="id", count=True)
    assert (layout.rows, layout.header, layout.has_id) == (2, ("id", "text"), True)
    lines = jsonl(tmp_path / "a.jsonl", [{"text": "a"}, {"text": "b"}, {"text": "c"}])
    lines.write_text(lines.read_text() + "\n  \n")
    assert count_part(lines, "jsonl", None) == 3
    pd.DataFrame({"text": ["a", "b"]}).to_parquet(tmp_path / "a.parquet", index=False)
    assert count_part(tmp_path / "a.parquet", "parquet", None) == 2


def test_parts_with_different_headers_are_refused_when_read_as_one_table(tmp_path: Path) -> None:
    pd.DataFrame({"id": ["1"], "text": ["a"]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"text": ["b"], "id": ["2"]}).to_csv(tmp_path / "b.csv", index=False)
    parts = [tmp_path / "a.csv", tmp_path / "b.csv"]
    assert inspect_parts(parts, text_column="text", id_column="id").has_id
    with pytest.raises(DataFormatError, match=r"b\.csv: its header \(text, id\) differs from that of a\.csv"):
        inspect_parts(parts, text_column="text", id_column="id", one_header=True)
