"""The real ``deskpilot`` console script, run as a user runs it: exit codes, messages, files on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import BUNDLED_DATA, DESKPILOT, REPO_ROOT, WriteRows, labelled_rows, run_cli
from tests.live_server import free_port


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_bundled_data_meets_the_contract(home: Path) -> None:
    result = run_cli("validate", BUNDLED_DATA, "--label-column", "category", home=home)
    assert result.returncode == 0, result.stderr
    assert "meets the contract" in result.stdout
    report = json.loads(
        run_cli("validate", BUNDLED_DATA, "--label-column", "category", "--json", home=home).stdout
    )
    assert report["ok"] is True
    assert report["rows"] == 10_003
    assert report["labels"] == 77


def test_problem_file_exits_1_and_names_each_row(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "tickets.csv"
    rows = [*labelled_rows(2, 6), {"text": "  ", "label": "intent_0"}, {"text": "x" * 50, "label": ""}]
    pd.DataFrame(rows).to_csv(path, index=False)
    result = run_cli("validate", path, "--max-text-length", "40", home=home)
    assert result.returncode == 1
    assert f"{path}:14 [text]: empty after trimming" in result.stdout
    assert f"{path}:15 [text]: 50 characters; the limit is 40" in result.stdout
    assert f"{path}:15 [label]: empty after trimming" in result.stdout
    payload = json.loads(run_cli("validate", path, "--max-text-length", "40", "--json", home=home).stdout)
    rules = {v["rule"]: v for v in payload["violations"]}
    assert rules["text_empty"]["examples"][0]["line"] == 14


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", b"text,label\n", "no data rows"),
        ("binary.csv", bytes(range(256)) * 4, "binary data"),
        ("semicolon.csv", b"text;label\nhi;a\n", "semicolon-separated"),
        ("noheader.csv", b"I never got my new card in the post,card_arrival\n", "looks like data"),
        ("ragged.csv", b"text,label\na,b\nc,d,e\n", "line 3 has 3 fields"),
        ("garbage.jsonl", b"this is not json\nnor this\n", "is this JSONL"),
        ("fake.parquet", b"PAR1 but not really", "not a readable Parquet file"),
    ],
)
def test_malformed_files_get_a_clear_error_and_no_traceback(
    tmp_path: Path, home: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("validate", path, home=home)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith(f"error: {path}")


def test_mixed_types_are_reported_per_line(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(r) for r in labelled_rows(2, 5)] + ['{"text": 12345, "label": "intent_0"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("validate", path, home=home)
    assert result.returncode == 1
    assert f"{path}:11 [text]: a int, expected a string" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("validate", "missing.csv"), ("validate", "data.xlsx"), ("validate",), ("validate", "x.csv", "--nope")],
)
def test_usage_errors_exit_2(tmp_path: Path, home: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    result = run_cli(*[str(tmp_path / a) if a.endswith((".csv", ".xlsx")) else a for a in args], home=home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_a_mistyped_command_exits_2_with_the_close_names(home: Path) -> None:
    top = run_cli("snapshto", "list", home=home)
    assert top.returncode == 2
    assert "Did you mean 'snapshot'?" in top.stderr
    nested = run_cli("snapshot", "lst", home=home)
    assert nested.returncode == 2
    assert "Did you mean 'list'?" in nested.stderr


def test_snapshot_lifecycle(tmp_path: Path, home: Path, write_rows: WriteRows) -> None:
    rows = labelled_rows(3, 6)
    rows[0]["text"] = "please email me at jane.doe@example.com about my refund"
    first = write_rows("a.csv", rows)
    shuffled = write_rows("b.jsonl", rows[::-1])

    created = run_cli("snapshot", "create", first, "--json", home=home)
    assert created.returncode == 0, created.stderr
    meta = json.loads(created.stdout)
    assert meta["rows"] == 18
    assert meta["redactions"] == {"EMAIL": 1}
    again = json.loads(run_cli("snapshot", "create", shuffled, "--json", home=home).stdout)
    assert again["digest"] == meta["digest"]

    stored = pd.read_parquet(Path(meta["path"]) / "data.parquet")
    assert "jane.doe@example.com" not in " ".join(stored["text"])
    assert "please email me at <EMAIL> about my refund" in stored["text"].tolist()

    listing = run_cli("snapshot", "list", home=home)
    assert listing.stdout.count(meta["digest"][:12]) == 1
    shown = json.loads(
        run_cli("snapshot", "show", meta["digest"][:10], "--seed", "3", "--json", home=home).stdout
    )
    assert shown["split"]["leakage"]["clean"] is True
    sides = ("train_rows", "validation_rows", "evaluation_rows")
    assert sum(shown["split"][side] for side in sides) == 18
    assert shown["split"]["evaluation_rows"] == shown["split"]["evaluation_split"]["rows"] > 0
    assert run_cli("snapshot", "verify", meta["digest"][:10], home=home).returncode == 0

    data = Path(meta["path"]) / "data.parquet"
    data.chmod(0o644)
    stored.assign(label="intent_0").to_parquet(data, index=False)
    tampered = run_cli("snapshot", "verify", meta["digest"][:10], home=home)
    assert tampered.returncode == 1
    assert "was modified" in tampered.stderr


def test_invalid_data_is_not_snapshotted_unless_asked(
    tmp_path: Path, home: Path, write_rows: WriteRows
) -> None:
    path = write_rows("a.csv", [*labelled_rows(2, 6), {"text": "", "label": "intent_1"}])
    refused = run_cli("snapshot", "create", path, home=home)
    assert refused.returncode == 1
    assert "--drop-invalid" in refused.stderr
    snapshots = home / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())
    kept = run_cli("snapshot", "create", path, "--drop-invalid", home=home)
    assert kept.returncode == 0
    assert "dropped 1 invalid rows" in kept.stdout


def test_redact_reads_arguments_and_stdin(home: Path) -> None:
    one = run_cli("redact", "card 4111 1111 1111 1111, mail bob@example.org", home=home)
    assert one.stdout.strip() == "card <CARD>, mail <EMAIL>"
    many = run_cli(
        "redact", "--pii-pattern", "TICKET=TCK-[0-9]{6}", home=home, stdin="see TCK-123456\nnothing\n"
    )
    assert many.stdout.splitlines() == ["see <TICKET>", "nothing"]
    bad = run_cli("redact", "x", "--pii-pattern", "BROKEN=([", home=home)
    assert bad.returncode == 1
    assert "BROKEN" in bad.stderr


def test_demo_trains_promotes_scores_and_serves_a_working_curl(home: Path) -> None:
    port = free_port()
    env = {**os.environ, "DESKPILOT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("DESKPILOT_TRACKING_URI", None)
    lines: list[str] = []
    with subprocess.Popen(
        [str(DESKPILOT), "demo", "--family", "tfidf", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if "serving until Ctrl-C" in line:
                    break
            output = "".join(lines)
            assert "serving until Ctrl-C" in output, output
            curl, suggest = [line.strip() for line in lines if line.strip().startswith("curl ")]
            answer = subprocess.run(
                ["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True
            )
            body = json.loads(answer.stdout)
            assert body["intent"] == "card_arrival"
            assert body["model_version"] == "1"
            answer = subprocess.run(
                ["bash", "-c", suggest], capture_output=True, text=True, timeout=60, check=True
            )
            suggestion = json.loads(answer.stdout)
            assert suggestion["triage"]["intent"] == "card_arrival"
            assert suggestion["draft"]["provider"] == "extractive"
            cited = set(suggestion["draft"]["citations"])
            assert cited
            assert cited <= {s["number"] for s in suggestion["sources"] if s["kind"] == "article"}
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    assert "texts shared between splits: 0" in output
    assert "models:/deskpilot-triage/1: accuracy" in output
    assert "deskpilot-triage@champion = models:/deskpilot-triage/1" in output
    assert "sam@example.com" in output, "the scored file keeps the caller's own text"
    assert "weather" in output
    assert (
        "9,999 tickets for tenant 'demo'" in output
    )  # the dataset as resolved tickets, 4 repeated ids merged
    assert "69 articles for tenant 'demo'" in output  # the bundled sample knowledge base
    assert "draft (extractive): Thank you for getting in touch about card arrival." in output
    assert "draft: none (no grounded answer: route to a person)" in output  # the weather question
    assert "and suggested: Thank you for getting in touch about card arrival." in output
    again = run_cli("demo", "--family", "tfidf", "--no-serve", home=home)
    assert again.returncode == 0, again.stderr
    assert "already trained on this data as models:/deskpilot-triage/1; skipped" in again.stdout
    assert "demo complete" in again.stdout
    assert "already built from these sources" in again.stdout  # the knowledge import is idempotent
