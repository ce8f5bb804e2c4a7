"""The data contract: each rule, with the exact file line / row it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpilot.data.contracts import DataContract, ValidationReport, validate_table
from deskpilot.data.io import read_table
from deskpilot.errors import EmptyDatasetError, MissingColumnError
from tests.helpers import WriteRows, labelled_rows

CONTRACT = DataContract(min_examples_per_class=2)


def check(path: Path, contract: DataContract = CONTRACT) -> ValidationReport:
    return validate_table(read_table(path), contract)


def rule_locations(report: ValidationReport, rule: str) -> list[int | None]:
    [result] = [r for r in report.rules if r.rule == rule]
    return [v.location for v in result.examples]


def test_valid_data_meets_the_contract(write_rows: WriteRows) -> None:
    report = check(write_rows("d.csv", labelled_rows(3, 4)))
    assert report.ok
    assert report.rules == ()
    assert report.label_counts == {"intent_0": 4, "intent_1": 4, "intent_2": 4}
    assert report.n_invalid_rows == 0


def test_text_rules_name_the_csv_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    long_text = "x" * 31
    path.write_text(
        "text,label\nfine,a\n   ,a\nfine too,b\n" + long_text + ",b\nok,a\nok again,b\n", encoding="utf-8"
    )
    report = check(path, DataContract(max_text_length=30, min_examples_per_class=2))
    assert not report.ok
    assert rule_locations(report, "text_empty") == [3]
    assert rule_locations(report, "text_too_long") == [5]
    [too_long] = [r for r in report.rules if r.rule == "text_too_long"]
    assert too_long.examples[0].message == "31 characters; the limit is 30"
    assert too_long.examples[0].column == "text"
    assert report.n_invalid_rows == 2


def test_jsonl_types_missing_values_and_mixed_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"text": "one", "label": "a"}',
                '{"text": 42, "label": "a"}',
                '{"text": null, "label": "a"}',
                '{"label": "b"}',
                '{"text": "two", "label": 7}',
                '{"text": "three", "label": ["b"]}',
                '{"text": "four", "label": "b"}',
                '{"text": "five", "label": "b"}',
                '{"text": "six", "label": "a"}',
                '{"text": "seven", "label": " "}',
                '{"text": "eight"}',
            ]
        ),
        encoding="utf-8",
    )
    report = check(path)
    assert rule_locations(report, "text_not_string") == [2]
    assert rule_locations(report, "text_missing") == [3, 4]
    assert rule_locations(report, "label_mixed_types") == [5]
    assert rule_locations(report, "label_not_string") == [6]
    assert rule_locations(report, "label_empty") == [10]
    assert rule_locations(report, "label_missing") == [11]
    assert report.label_counts == {"a": 2, "b": 2}


def test_integer_labels_alone_are_fine(write_rows: WriteRows) -> None:
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(6)]
    report = check(write_rows("d.parquet", rows))
    assert report.ok
    assert report.label_counts == {"0": 3, "1": 3}


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine,a\ncaf\xe9,a\nok,b\nalso ok,b\nyes,a\n")
    report = check(path)
    assert rule_locations(report, "encoding_error") == [3]


def test_jsonl_parse_problems_are_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = [f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}' for i in range(4)]
    path.write_text("\n".join([good[0], "{broken", *good[1:]]), encoding="utf-8")
    report = check(path)
    assert rule_locations(report, "invalid_json") == [2]
    assert not report.ok


def test_conflicting_duplicates_flag_every_row_of_the_group(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "text,label\nlost card,a\nother,b\n lost card ,b\nthird,a\nmore,b\nlost card,a\nsame,a\nsame,a\n",
        encoding="utf-8",
    )
    report = check(path)
    assert rule_locations(report, "conflicting_duplicate") == [2, 4, 7]
    [conflict] = [r for r in report.rules if r.rule == "conflicting_duplicate"]
    assert conflict.examples[0].message == "the same text has labels 'a', 'b'"
    assert rule_locations(report, "duplicate_text") == [9]
    [dup] = [r for r in report.rules if r.rule == "duplicate_text"]
    assert dup.severity.value == "warning"
    assert dup.examples[0].message == "same text and label as line 8"


def test_allowed_labels_and_class_size(write_rows: WriteRows) -> None:
    rows = [*labelled_rows(2, 5), {"text": "odd one", "label": "intent_9"}]
    contract = DataContract(min_examples_per_class=3, allowed_labels=frozenset({"intent_0", "intent_1"}))
    report = check(write_rows("d.csv", rows), contract)
    assert rule_locations(report, "label_not_allowed") == [12]
    small = DataContract(min_examples_per_class=6)
    report = check(write_rows("d.csv", labelled_rows(2, 5)), small)
    [rule] = [r for r in report.rules if r.rule == "class_too_small"]
    assert rule.count == 2
    assert rule.examples[0].location is None
    assert "needs at least 6" in rule.examples[0].message


def test_single_class_fails(write_rows: WriteRows) -> None:
    report = check(write_rows("d.csv", labelled_rows(1, 5)))
    assert [r.rule for r in report.errors] == ["too_few_classes"]


def test_unlabelled_contract_checks_text_only(write_rows: WriteRows) -> None:
    rows = [{"text": "hello"}, {"text": ""}]
    report = check(write_rows("d.csv", rows), DataContract(label_column=None))
    assert [r.rule for r in report.errors] == ["text_empty"]
    assert report.label_counts == {}


def test_examples_are_capped_but_counts_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + " ,a\n" * 500 + "x,a\ny,b\n", encoding="utf-8")
    report = validate_table(read_table(path), CONTRACT, max_examples=5)
    [empty] = [r for r in report.rules if r.rule == "text_empty"]
    assert empty.count == 500
    assert [v.location for v in empty.examples] == [2, 3, 4, 5, 6]


def test_missing_column_hints_at_the_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text;label\nhello;a\n", encoding="utf-8")
    with pytest.raises(MissingColumnError, match="semicolon-separated"):
        check(path)


def test_missing_header_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("I lost my card yesterday and need help,card_lost\nwhere is my money,transfer\n")
    with pytest.raises(MissingColumnError, match="looks like data, not a header"):
        check(path)


def test_header_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        check(path)


def test_report_dict_is_json_shaped(write_rows: WriteRows) -> None:
    rows = [*labelled_rows(2, 3), {"text": "", "label": "intent_0"}]
    report = check(write_rows("d.csv", rows)).to_dict()
    assert report["ok"] is False
    [violation] = report["violations"]
    assert violation["rule"] == "text_empty"
    assert violation["examples"][0] == {
        "file": report["file"],
        "line": 8,
        "column": "text",
        "reason": "empty after trimming",
    }
