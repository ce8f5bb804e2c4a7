"""``deskpilot data audit-labels`` as a user runs it: planted label errors are found, reports are written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import run_cli

TOPICS = {
    "card_lost": ["I lost my card", "my card is missing", "card was stolen yesterday", "cannot find my card"],
    "refund": ["I want a refund", "please refund my payment", "refund for the order", "money back please"],
    "pin": ["forgot my pin", "reset my PIN please", "my pin is blocked", "how do I change my pin"],
}
PLANTED = {0: "refund", 45: "pin", 90: "card_lost", 130: "refund"}  # row index -> wrong label


@pytest.fixture(scope="module")
def noisy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(7)
    rows = []
    for label, texts in TOPICS.items():
        for i in range(45):
            tail = rng.choice(["today", "now", "asap", "thanks", "", "urgently"])
            rows.append({"text": f"{rng.choice(texts)} {tail} ref {i}", "intent": label})
    for index, wrong in PLANTED.items():
        assert rows[index]["intent"] != wrong
        rows[index]["intent"] = wrong
    rows[5]["text"] = "<script>alert('x')</script> I lost my card, mail me at jane.doe@example.com"
    rows.append({"text": "I LOST MY CARD!!", "intent": "card_lost"})
    rows.append({"text": "i lost my card", "intent": "pin"})  # a conflicting near-duplicate
    path = tmp_path_factory.mktemp("audit") / "tickets.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_planted_label_errors_are_flagged_with_their_line_and_true_label(
    noisy_file: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    args = ("data", "audit-labels", noisy_file, "--label-column", "intent", "--report", report)
    result = run_cli(*args, "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    audit = json.loads(result.stdout)
    assert (audit["rows"], audit["labels"], audit["folds"]) == (137, 3, 5)
    flagged = {row["location"]: row for row in audit["flagged"]}
    for index in PLANTED:
        line = index + 2  # header on line 1
        assert line in flagged, f"planted error on line {line} not flagged: {sorted(flagged)}"
        assert flagged[line]["suggested_label"] == (
            "card_lost" if index < 45 else "refund" if index < 90 else "pin"
        )
    assert len(flagged) <= len(PLANTED) + 3  # the planted ones, and few others
    conflicts = {(c["first_location"], c["second_location"]) for c in audit["conflicts"]}
    assert (137, 138) in conflicts
    # what the audit shows is redacted, and the HTML escapes it
    texts = [row["text"] for row in audit["flagged"]] + [c["first_text"] for c in audit["conflicts"]]
    assert not any("jane.doe@example.com" in text for text in texts)
    assert json.loads((report / "label_audit.json").read_text())["flagged_count"] == len(flagged)
    html = (report / "label_audit.html").read_text()
    assert "<script>alert" not in html
    assert "I LOST MY CARD!!" in html
    assert "| line | text | label | suggested |" in (report / "label_audit.md").read_text()


def test_the_summary_lists_the_most_doubtful_rows(noisy_file: Path, tmp_path: Path) -> None:
    result = run_cli("data", "audit-labels", noisy_file, "--label-column", "intent", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "likely mislabelled:" in result.stdout
    assert "line 2: refund -> card_lost" in result.stdout or "line 2: refund -> card_lost" in result.stdout


@pytest.mark.parametrize(
    ("rows", "args", "message"),
    [
        (
            [{"text": "a", "intent": "x"}, {"text": "b", "intent": "y"}] * 6,
            ("--model", "nope"),
            "unknown model",
        ),
        ([{"text": "a", "intent": "x"}, {"text": "b", "intent": "y"}] * 6, ("--folds", "1"), "--folds"),
    ],
)
def test_bad_requests_exit_2_with_a_reason(
    tmp_path: Path, rows: list[dict[str, str]], args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "tickets.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = run_cli("data", "audit-labels", path, "--label-column", "intent", *args, home=tmp_path / "home")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_that_breaks_the_contract_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    pd.DataFrame([{"text": "a", "intent": "x"}, {"text": " ", "intent": "y"}]).to_csv(path, index=False)
    result = run_cli("data", "audit-labels", path, "--label-column", "intent", home=tmp_path / "home")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"{path}:3 [text]: empty after trimming" in result.stdout + result.stderr
    single = tmp_path / "single.csv"
    pd.DataFrame([{"text": "a b", "intent": "x"}] * 4 + [{"text": "c", "intent": "y"}]).to_csv(
        single, index=False
    )
    result = run_cli("data", "audit-labels", single, "--label-column", "intent", home=tmp_path / "home")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "class_too_small" in result.stdout + result.stderr


def test_training_can_leave_the_flagged_rows_out_and_records_it(noisy_file: Path, tmp_path: Path) -> None:
    from deskpilot.config import Settings
    from deskpilot.domain import ModelRef
    from deskpilot.workflows.build import build_registry

    home = tmp_path / "home"
    report = tmp_path / "report"
    audited = run_cli(
        "data", "audit-labels", noisy_file, "--label-column", "intent", "--report", report, home=home
    )
    assert audited.returncode == 0, audited.stderr
    flagged = json.loads((report / "label_audit.json").read_text())["flagged"]
    trained = run_cli(
        "train",
        "--data",
        noisy_file,
        "--label-column",
        "intent",
        "--exclude-flagged",
        report / "label_audit.json",
        home=home,
    )
    assert trained.returncode == 0, trained.stderr
    assert "flagged training rows" in trained.stderr
    assert "flagged rows match this data" in trained.stderr
    model = build_registry(Settings(home=home)).load(ModelRef("deskpilot-triage", version="1"))
    lineage = model.manifest.lineage
    excluded = lineage["excluded"]
    assert excluded["flagged"] == len({(row["key"], row["given_label"]) for row in flagged})
    assert excluded["source"] == str(report / "label_audit.json")
    assert excluded["matched"] == excluded["flagged"]  # the audit was of this very file
    # flagged rows on the training side are left out; those in validation or evaluation stay, to be measured
    assert 0 < excluded["train_rows_left_out"] <= len(flagged)
    total = lineage["train_rows"] + lineage["validation_rows"] + lineage["evaluation_rows"]
    assert total == 137 - excluded["train_rows_left_out"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"rows": 3}', "not a label audit"),
        ('{"flagged": [{"key": "abc"}]}', "flagged entry 1 lacks"),
    ],
)
def test_a_bad_flag_file_is_refused_before_training(tmp_path: Path, content: str, message: str) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(content)
    data = tmp_path / "tickets.csv"
    pd.DataFrame([{"text": f"text {i}", "intent": f"l{i % 2}"} for i in range(20)]).to_csv(data, index=False)
    result = run_cli(
        "train", "--data", data, "--label-column", "intent", "--exclude-flagged", flags, home=tmp_path / "h"
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert not (tmp_path / "h" / "snapshots").exists() or not any((tmp_path / "h" / "snapshots").iterdir())


def test_an_audit_of_other_data_is_refused(tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flagged": [{"key": "0123456789abcdef", "given_label": "l0"}]}))
    data = tmp_path / "tickets.csv"
    pd.DataFrame([{"text": f"text {i}", "intent": f"l{i % 2}"} for i in range(20)]).to_csv(data, index=False)
    result = run_cli(
        "train", "--data", data, "--label-column", "intent", "--exclude-flagged", flags, home=tmp_path / "h"
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"--exclude-flagged {flags}: none of its 1 flagged rows" in result.stderr
