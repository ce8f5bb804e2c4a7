"""Batch scoring: every format, ids carried through, unscorable rows, atomic output, throughput parity."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from deskpilot.batch.predict import score_file
from deskpilot.batch.predictor import FramePredictor
from deskpilot.domain import RoutingThreshold
from deskpilot.errors import DataFormatError, MissingColumnError
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from tests.helpers import bundled_subset


@pytest.fixture(scope="module")
def model() -> TriageModel:
    frame = bundled_subset(labels=4, per_label=25)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist())
    return TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100))


def read_any(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False)


@pytest.mark.parametrize("out_name", ["out.csv", "out.jsonl", "out.parquet"])
@pytest.mark.parametrize("in_name", ["in.csv", "in.jsonl", "in.parquet"])
def test_scores_every_format(model: TriageModel, tmp_path: Path, in_name: str, out_name: str) -> None:
    source = pd.DataFrame({"id": ["a", "b", "c"], "text": ["my card never arrived", "  ", "top up failed"]})
    path = tmp_path / in_name
    if path.suffix == ".jsonl":
        source.to_json(path, orient="records", lines=True)
    elif path.suffix == ".parquet":
        source.to_parquet(path, index=False)
    else:
        source.to_csv(path, index=False)
    summary = score_file(model, path, tmp_path / out_name, batch_rows=2)
    out = read_any(tmp_path / out_name)
    assert summary.rows == 3
    assert summary.unscorable_rows == 1
    assert list(out.columns) == ["id", "text", "intent", "confidence", "route", "alternatives", "error"]
    assert out["id"].astype(str).tolist() == ["a", "b", "c"]
    assert out["route"].iloc[1] == "human"
    assert out["error"].iloc[1] == "text_empty"
    assert out["intent"].iloc[0] in model.classes
    alternatives = json.loads(out["alternatives"].iloc[0])
    assert len(alternatives) == 2
    assert {"intent", "confidence"} == set(alternatives[0])


def test_matches_the_in_memory_model(model: TriageModel, tmp_path: Path) -> None:
    texts = bundled_subset(labels=4, per_label=10, seed=1)["text"].tolist()
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    score_file(FramePredictor(model, id_column=None), tmp_path / "in.csv", tmp_path / "out.csv", batch_rows=7)
    out = pd.read_csv(tmp_path / "out.csv")
    expected = model.predict(texts)
    assert out["intent"].tolist() == [p.intent for p in expected]
    assert out["confidence"].tolist() == pytest.approx([p.confidence for p in expected], abs=1e-6)
    assert "id" not in out.columns


def test_failure_keeps_the_previous_output(model: TriageModel, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    output.write_text("previous results\n")
    (tmp_path / "in.csv").write_text("body\nhello\n")
    with pytest.raises(MissingColumnError, match="no column 'text'"):
        score_file(model, tmp_path / "in.csv", output)
    assert output.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_malformed_input_is_a_format_error(model: TriageModel, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b"text\n\x00\x01binary")
    with pytest.raises(DataFormatError, match="binary"):
        score_file(model, tmp_path / "in.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
