"""``deskpilot evaluate`` and ``deskpilot gate`` end to end: real CLI, real SQLite registry, real models."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from deskpilot.data.snapshots import SnapshotStore
from deskpilot.data.splits import frozen_evaluation
from tests.helpers import BUNDLED_DATA, bundled_subset, run_cli

Setup = tuple[Path, Path, Path]


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """v1 (champion): 40 per label; v2: 6 per label; v3: a retrain of v1. Plus a held-out evaluation file."""
    folder = tmp_path_factory.mktemp("cli-eval")
    train = bundled_subset(labels=8, per_label=40)
    train.to_csv(folder / "train.csv", index=False)
    train.groupby("label").head(6).to_csv(folder / "small.csv", index=False)
    everything = pd.read_csv(BUNDLED_DATA).rename(columns={"category": "label"})
    held_out = everything[everything["label"].isin(train["label"]) & ~everything["text"].isin(train["text"])]
    held_out = held_out.groupby("label").head(45).copy()
    held_out["channel"] = ["email" if i % 2 else "chat" for i in range(len(held_out))]
    held_out.to_csv(folder / "eval.csv", index=False)
    home = folder / "home"
    for data in ("train.csv", "small.csv", "train.csv"):
        result = run_cli("train", "--data", folder / data, "--model", "tfidf", home=home)
        assert result.returncode == 0, result.stderr
    return home, folder, folder / "eval.csv"


def test_evaluate_prints_metrics_json_and_writes_the_report(registry_home: Setup) -> None:
    home, folder, held_out = registry_home
    report = folder / "report"
    result = run_cli(
        "evaluate",
        "models:/deskpilot-triage/2",
        "--data",
        held_out,
        "--report",
        report,
        "--bootstrap",
        "200",
        home=home,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    accuracy = payload["metrics"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]
    assert payload["data"]["rows"] == 360
    assert {s["value"] for s in payload["slices"] if s["column"] == "channel"} == {"chat", "email"}
    assert payload["cost"]["latency_p99_ms"] > 0
    assert payload["behavioral"]["pass_rates"]["inv"] >= 0
    assert (report / "report.html").is_file()
    assert "models:/deskpilot-triage/1" in (report / "report.md").read_text()  # the champion beside it


def test_gate_fails_a_worse_challenger_with_the_reason(registry_home: Setup) -> None:
    home, _, held_out = registry_home
    result = run_cli("gate", "models:/deskpilot-triage/2", "--data", held_out, home=home)
    assert result.returncode == 1, result.stderr
    assert "gate FAIL" in result.stdout
    assert "| relative | accuracy |" in result.stdout
    assert "significantly worse" in result.stdout
    shown = json.loads(run_cli("models", "show", "models:/deskpilot-triage/2", "--json", home=home).stdout)
    assert shown["tags"]["deskpilot.gate"] == "fail"


def test_gate_passes_a_retrain_as_not_significantly_different(registry_home: Setup) -> None:
    home, _, held_out = registry_home
    result = run_cli("gate", "models:/deskpilot-triage/3", "--data", held_out, "--json", home=home)
    assert result.returncode == 0, result.stdout
    decision = json.loads(result.stdout)
    assert decision["outcome"] == "pass"
    assert decision["champion"]["uri"] == "models:/deskpilot-triage/1"
    relative = [r for r in decision["rules"] if r["kind"] == "relative"]
    assert relative
    assert all(r["measured"] == 0.0 and "not significantly worse" in r["detail"] for r in relative)


def test_train_gates_automatically_and_sets_aliases(registry_home: Setup) -> None:
    home, _, _ = registry_home
    listing = json.loads(run_cli("models", "list", "--json", home=home).stdout)
    aliases = {row["uri"]: row["aliases"] for row in listing}
    assert aliases["models:/deskpilot-triage/1"] == ["champion"]
    assert aliases["models:/deskpilot-triage/3"] == ["challenger"]
    card = run_cli("models", "card", "models:/deskpilot-triage/3", home=home)
    assert card.returncode == 0, card.stderr
    assert "## Gate decision" in card.stdout


def test_bad_policy_names_the_line(registry_home: Setup) -> None:
    home, folder, held_out = registry_home
    policy = folder / "policy.yaml"
    policy.write_text("version: 1\nfloors:\n  accuracy: 0.9\n  recall_at_5: 0.5\n")
    result = run_cli("gate", "models:/deskpilot-triage/1", "--data", held_out, "--policy", policy, home=home)
    assert result.returncode == 2
    assert f"{policy}:4: unknown metric 'recall_at_5' in floors" in result.stderr
    assert "Traceback" not in result.stderr


def test_unseen_labels_are_counted_not_a_crash(registry_home: Setup) -> None:
    home, folder, held_out = registry_home
    mixed = pd.concat(
        [
            pd.read_csv(held_out).head(50),
            pd.DataFrame(
                {"text": ["how do I rent a car", "book me a table"], "label": ["car_rental", "restaurant"]}
            ),
        ]
    )
    path = folder / "mixed.jsonl"
    mixed.to_json(path, orient="records", lines=True)
    result = run_cli(
        "evaluate", "models:/deskpilot-triage@champion", "--data", path, "--bootstrap", "100", home=home
    )
    assert result.returncode == 0, result.stderr
    unseen = json.loads(result.stdout)["unseen_labels"]
    assert unseen["rows"] == 2
    assert unseen["labels"] == {"car_rental": 1, "restaurant": 1}


def test_gate_on_training_data_leaves_out_the_rows_either_model_trained_on(registry_home: Setup) -> None:
    home, folder, _ = registry_home
    train = folder / "train.csv"
    snapshot = next(
        s for s in SnapshotStore(home / "snapshots").all() if s.metadata.source_file == str(train)
    )
    held_out = frozen_evaluation(snapshot).rows.size
    result = run_cli(
        "gate", "models:/deskpilot-triage/3", "--data", train, "--no-record", "--json", home=home
    )
    assert result.returncode == 0, result.stdout
    rows = json.loads(result.stdout)["rows"]
    assert (rows["offered"], rows["compared"], rows["forced"], rows["leakage"]) == (320, held_out, False, "")
    assert rows["champion_seen"] == rows["challenger_seen"] == rows["left_out"] == 320 - held_out
    champion = json.loads(result.stdout)["champion"]  # recorded as `train` records it
    assert (champion["same_evaluation_split"], champion["comparison_unseen_by_both"]) == (True, True)
    text = run_cli("gate", "models:/deskpilot-triage/3", "--data", train, "--no-record", home=home)
    assert f"rows: {held_out:,} of 320 rows (train.csv); {320 - held_out:,} left out" in text.stdout


def test_a_forced_overlapping_comparison_reports_the_leakage(registry_home: Setup) -> None:
    home, folder, _ = registry_home
    train = folder / "train.csv"
    result = run_cli(
        "gate", "models:/deskpilot-triage/3", "--data", train, "--include-seen-rows", "--no-record", home=home
    )
    assert result.returncode == 0, result.stdout
    seen = (
        320
        - frozen_evaluation(
            next(s for s in SnapshotStore(home / "snapshots").all() if s.metadata.source_file == str(train))
        ).rows.size
    )
    leakage = (
        f"forced comparison, leakage: the champion trained on {seen} of the 320 compared rows; "
        f"the challenger trained on {seen} of the 320 compared rows"
    )
    assert f"rows: 320 of 320 rows (train.csv); {leakage}" in result.stdout
    assert f"reason: every rule holds ({leakage})" in result.stdout
    recorded = run_cli(
        "gate", "models:/deskpilot-triage/3", "--data", train, "--include-seen-rows", "--json", home=home
    )
    decision = json.loads(recorded.stdout)
    assert decision["rows"]["forced"] is True
    assert decision["champion"]["comparison_unseen_by_both"] is False
    assert decision["champion"]["same_evaluation_split"] is True
    assert decision["rows"]["champion_seen"] == seen
    shown = json.loads(run_cli("models", "show", "models:/deskpilot-triage/3", "--json", home=home).stdout)
    assert leakage in shown["tags"]["deskpilot.gate_reason"]  # the leakage stays with the recorded decision
