"""Readers: every format, and a clear DataFormatError (never a parser traceback) for malformed files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deskpilot.data.io import read_table, write_table_atomic
from deskpilot.errors import DataFileNotFoundError, DataFormatError, UnsupportedFormatError
from tests.helpers import WriteRows, labelled_rows


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.parquet"])
def test_reads_every_format_with_locations(write_rows: WriteRows, name: str) -> None:
    path = write_rows(name, labelled_rows(2, 3))
    table = read_table(path)
    assert table.n_rows == 6
    assert list(table.frame.columns) == ["text", "label"]
    first = 2 if table.format in ("csv", "tsv") else 1
    assert list(table.locations) == list(range(first, first + 6))
    assert table.location_kind == ("row" if table.format == "parquet" else "line")


def test_csv_keeps_na_like_strings_as_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nNA,a\nnull,b\n,c\n", encoding="utf-8")
    frame = read_table(path).frame
    assert frame["text"].tolist() == ["NA", "null", ""]


def test_line_numbers_follow_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"two\nlines",a\n\nplain,b\n"three\nline\nmsg",c\nlast,d\n', encoding="utf-8")
    table = read_table(path)
    assert table.frame["text"].tolist() == ["two\nlines", "plain", "three\nline\nmsg", "last"]
    assert list(table.locations) == [2, 5, 6, 9]


def test_utf8_bom_is_stripped_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\nhello,a\n".encode())
    assert list(read_table(path).frame.columns) == ["text", "label"]


def test_invalid_utf8_is_flagged_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\ncaf\xe9 au lait,a\nfine,b\n")
    table = read_table(path)
    assert table.may_have_bad_bytes
    assert table.n_rows == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"PAR1\x00\x00binary", "Parquet file"),
        (b"text,label\n\x00\x01\x02", "NUL byte"),
        (b"\xff\xfet\x00e\x00", "UTF-16"),
        (b'text,label\n"a",b\n"c","d","e"\n', "has 3 fields where the header has 2"),
    ],
)
def test_malformed_csv_raises_a_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=expected) as info:
        read_table(path)
    assert str(path) in info.value.message


def test_repeated_header_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,text,label\na,b,c\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="repeats column 'text'"):
        read_table(path)


def test_jsonl_bad_lines_become_row_problems(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a", "label": "x"}\n\nnot json\n[1, 2]\n{"text": "b", "label": "y"}\n\xff\n')
    table = read_table(path)
    assert table.n_rows == 2
    assert list(table.locations) == [1, 5]
    assert [(p.location, p.rule) for p in table.row_problems] == [
        (3, "invalid_json"),
        (4, "invalid_json"),
        (6, "encoding_error"),
    ]


def test_jsonl_that_is_really_csv_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("text,label\nhello,a\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="is this JSONL"):
        read_table(path)


def test_corrupt_parquet_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        read_table(path)


def test_unknown_extension_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_bytes(b"PK")
    with pytest.raises(UnsupportedFormatError, match=r"\.xlsx"):
        read_table(tmp_path / "d.xlsx")
    with pytest.raises(DataFileNotFoundError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataFileNotFoundError, match="not a regular file"):
        read_table(tmp_path.parent)


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.parquet"])
def test_atomic_write_round_trips_and_leaves_no_temp_files(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    target = tmp_path / "sub" / name
    write_table_atomic(frame, target)
    assert read_table(target).frame.astype(str).equals(frame)
    assert [p.name for p in target.parent.iterdir()] == [name]
