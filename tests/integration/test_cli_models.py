"""``deskpilot train``, ``models list|show`` and ``predict`` end to end on a real SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import bundled_subset, labelled_rows, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    folder = tmp_path_factory.mktemp("cli-models")
    data = folder / "tickets.csv"
    bundled_subset(labels=6, per_label=25).rename(columns={"label": "queue"}).to_csv(data, index=False)
    home = folder / "home"
    result = run_cli(
        "train", "--data", data, "--model", "tfidf", "--label-column", "queue", "--json", home=home
    )
    assert result.returncode == 0, result.stderr
    return home, data, json.loads(result.stdout)


def test_train_prints_a_registered_champion(trained: tuple[Path, Path, dict[str, object]]) -> None:
    _, _, payload = trained
    assert payload["uri"] == "models:/deskpilot-triage/1"
    assert payload["aliases"] == ["champion"]
    metrics = payload["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["accuracy"] > 0.8


def test_second_train_with_a_name_prints_its_uri(trained: tuple[Path, Path, dict[str, object]]) -> None:
    home, data, _ = trained
    result = run_cli(
        "train", "--data", data, "--label-column", "queue", "--name", "other", "--seed", "4", home=home
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "models:/other/1"
    assert "validation: accuracy" in result.stderr


def test_models_list_and_show(trained: tuple[Path, Path, dict[str, object]]) -> None:
    home, _, payload = trained
    listing = json.loads(run_cli("models", "list", "--name", "deskpilot-triage", "--json", home=home).stdout)
    assert [(m["uri"], m["family"], m["aliases"]) for m in listing] == [
        ("models:/deskpilot-triage/1", "tfidf", ["champion"])
    ]
    shown = run_cli("models", "show", "models:/deskpilot-triage@champion", home=home)
    assert shown.returncode == 0, shown.stderr
    assert payload["dataset_digest"] in shown.stdout
    assert "auto when confidence ≥" in shown.stdout
    assert "val_accuracy" in shown.stdout


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_writes_scores(
    trained: tuple[Path, Path, dict[str, object]], tmp_path: Path, suffix: str
) -> None:
    home, _, _ = trained
    source = tmp_path / "incoming.csv"
    pd.DataFrame({"id": [1, 2], "text": ["where is my new card", "mail me at a@example.com please"]}).to_csv(
        source, index=False
    )
    output = tmp_path / f"scored{suffix}"
    result = run_cli(
        "predict",
        "--model",
        "models:/deskpilot-triage@champion",
        "--input",
        source,
        "--output",
        output,
        home=home,
    )
    assert result.returncode == 0, result.stderr
    assert "scored 2 rows" in result.stdout
    frame = pd.read_parquet(output) if suffix == ".parquet" else None
    if frame is None:
        frame = pd.read_json(output, lines=True) if suffix == ".jsonl" else pd.read_csv(output)
    assert frame["route"].isin(["auto", "human"]).all()
    assert frame["text"].iloc[1] == "mail me at a@example.com please"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("models", "show", "models:/deskpilot-triage/9"), 1, "not found"),
        (("models", "show", "deskpilot-triage"), 2, "is not a model URI"),
        (
            ("train", "--data", "{data}", "--model", "gpt", "--label-column", "queue"),
            2,
            "unknown model family",
        ),
        (
            ("predict", "--model", "models:/nope@champion", "--input", "{data}", "--output", "o.csv"),
            1,
            "nope",
        ),
    ],
)
def test_bad_requests_fail_cleanly(
    trained: tuple[Path, Path, dict[str, object]], args: tuple[str, ...], code: int, message: str
) -> None:
    home, data, _ = trained
    result = run_cli(*[a.replace("{data}", str(data)) for a in args], home=home)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_single_class_data_registers_nothing(tmp_path: Path) -> None:
    data = tmp_path / "one.csv"
    pd.DataFrame(labelled_rows(1, 8)).to_csv(data, index=False)
    home = tmp_path / "home"
    result = run_cli("train", "--data", data, home=home)
    assert result.returncode == 1
    assert "too_few_classes" in result.stderr
    listing = run_cli("models", "list", "--json", home=home)
    assert json.loads(listing.stdout) == []
