"""What the driver checks before scoring: columns per part, one column set per job, exact row counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from deskpilot.batch.parts import count_part, csv_convert_options, csv_read_options, inspect_parts, jsonl_keys
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


@pytest.mark.parametrize("above", ["\n", "\r\n  \n"])
def test_blank_lines_above_a_csv_header_are_skipped_as_pandas_skips_them(tmp_path: Path, above: str) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text(f"{above}id,text\n1,hello\n2,world\n", encoding="utf-8")
    layout = inspect_parts([csv], text_column="text", id_column="id", count=True)
    assert (layout.rows, layout.header, layout.skip_rows) == (2, ("id", "text"), above.count("\n") + 1)
    table = pacsv.read_csv(
        str(csv),
        read_options=csv_read_options(layout.header or (), layout.skip_rows),
        convert_options=csv_convert_options(layout.header or ()),
    )
    assert table.to_pydict() == {"id": ["1", "2"], "text": ["hello", "world"]}


def test_csv_parts_whose_headers_start_on_different_lines_are_refused_as_one_table(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,text\n1,a\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("\nid,text\n2,b\n", encoding="utf-8")
    parts = [tmp_path / "a.csv", tmp_path / "b.csv"]
    with pytest.raises(DataFormatError, match=r"b\.csv: its header is on line 2, that of a\.csv on line 1"):
        inspect_parts(parts, text_column="text", id_column="id", one_header=True)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"text": "trunc', r"line 500: not valid JSON"),
        (b'{"text": "caf\xe9"}', r"line 500: bytes that are not UTF-8"),
        (b'["text", "a list"]', r"line 500: a JSON list, not an object"),
    ],
)
def test_every_jsonl_line_is_checked_when_counted(tmp_path: Path, bad: bytes, reason: str) -> None:
    part = tmp_path / "part-7.jsonl"  # the bad line far past the first record, which is read first
    good = b"".join(b'{"id": %d, "text": "a ticket long enough to fill a block"}\n' % i for i in range(498))
    part.write_bytes(good + b"\n" + bad + b'\n{"text": "b"}\n')
    with pytest.raises(DataFormatError, match=rf"part-7\.jsonl: {reason}") as caught:
        inspect_parts([part], text_column="text", id_column="id", count=True)
    assert caught.value.details == {"file": str(part), "line": 500}


BIG_ID = 1234567890123456789  # past 2**53: as a float it would be 1.2345678901234568e+18


@pytest.mark.parametrize("out_name", ["out.jsonl", "out.csv", "out.parquet"])
def test_a_large_integer_id_beside_a_missing_one_keeps_every_digit(
    model: TriageModel, tmp_path: Path, out_name: str
) -> None:
    source = jsonl(
        tmp_path / "in.jsonl",
        [{"id": BIG_ID, "text": "card never arrived"}, {"id": None, "text": "top up failed"}, {"text": "x"}],
    )
    score_file(model, source, tmp_path / out_name, batch_rows=10)
    if out_name.endswith(".parquet"):
        ids = pd.read_parquet(tmp_path / out_name)["id"].tolist()
    elif out_name.endswith(".jsonl"):
        ids = [json.loads(line)["id"] for line in (tmp_path / out_name).read_text().splitlines()]
    else:
        ids = pd.read_csv(tmp_path / out_name, dtype=str)["id"].tolist()
        ids = [None if isinstance(i, float) else i for i in ids]
    assert ids == [str(BIG_ID), None, None]
