"""Batch scoring on both engines against the online service: one predictor, the same answer for every row.

A local Ray (two CPUs, a small object store) starts once for the module; the engine joins it rather than
starting its own, as it would join a cluster given ``--ray-address``. One CLI test starts its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deskpilot.batch.ray_engine import SUMMARY_FILE
from deskpilot.errors import DataFileNotFoundError, MissingColumnError, UsageError
from deskpilot.workflows.scoring import BatchJob, score_batch
from tests.helpers import bundled_subset, run_cli
from tests.integration.api_fixtures import ACME_KEY, MODEL, TrainedHome, running, settings_for, trained_home

pytestmark = pytest.mark.slow

PII = [
    "my card 4111 1111 1111 1111 never arrived, write to jane.doe@example.com",
    "call me on +44 20 7946 0958 about the top up that failed",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("batch") / "home", versions=1)


@pytest.fixture(scope="module")
def tickets() -> pd.DataFrame:
    texts = bundled_subset(labels=8, per_label=6, seed=3)["text"].tolist() + PII + ["", "   "]
    return pd.DataFrame({"id": [f"t{i:03d}" for i in range(len(texts))], "text": texts})


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=256 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def write_parts(frame: pd.DataFrame, folder: Path, fmt: str, parts: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(frame) // parts)
    for n in range(parts):
        part = frame.iloc[n * size : (n + 1) * size]
        path = folder / f"part-{n}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        elif fmt == "jsonl":
            part.to_json(path, orient="records", lines=True)
        else:
            part.to_csv(path, index=False)
    return folder


def job(trained: TrainedHome, source: Path, output: Path, **changes: Any) -> BatchJob:
    values: dict[str, Any] = {"model_uri": f"models:/{MODEL}/{trained.versions[0]}", "progress": False}
    values.update(changes)
    return BatchJob(input_path=source, output_path=output, **values)


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


def test_service_local_and_ray_give_every_row_the_same_answer(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    settings = settings_for(trained)
    source = tmp_path / "tickets.csv"
    tickets.to_csv(source, index=False)
    local = score_batch(settings, job(trained, source, tmp_path / "local.parquet"), registry=trained.registry)
    ray = score_batch(
        settings,
        job(trained, write_parts(tickets, tmp_path / "parts", "csv"), tmp_path / "ray", engine="ray"),
        registry=trained.registry,
    )
    assert (local.rows, local.unscorable_rows) == (ray.rows, ray.unscorable_rows) == (len(tickets), 2)
    assert local.auto_rows == ray.auto_rows
    local_rows = by_id(pq.read_table(str(tmp_path / "local.parquet")).to_pandas())
    ray_rows = by_id(pq.read_table(str(tmp_path / "ray")).to_pandas())
    pd.testing.assert_frame_equal(local_rows, ray_rows[local_rows.columns])

    scorable = tickets[tickets["text"].str.strip() != ""]
    items = [{"id": i, "text": t} for i, t in zip(scorable["id"], scorable["text"], strict=True)]
    online: dict[str, Any] = {}
    with running(settings, registry=trained.registry) as server, server.client(ACME_KEY) as client:
        for start in range(0, len(items), 16):  # the API's batch limit
            answer = client.post("/v1/triage/batch", json={"items": items[start : start + 16]})
            assert answer.status_code == 200, answer.text
            online.update({item["id"]: item for item in answer.json()["items"]})
    for row in ray_rows.itertuples():
        if row.error is not None:
            assert row.error == "text_empty"
            assert row.route == "human"
            continue
        served = online[row.id]
        assert (served["intent"], served["route"]) == (row.intent, row.route), row.id
        assert served["confidence"] == pytest.approx(row.confidence, abs=1e-6)
        alternatives = json.loads(row.alternatives)
        assert [a["intent"] for a in served["alternatives"]] == [a["intent"] for a in alternatives]
        for mine, theirs in zip(alternatives, served["alternatives"], strict=True):
            assert theirs["confidence"] == pytest.approx(mine["confidence"], abs=1e-6)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ray_reads_parts_of_every_format_and_keeps_unscorable_rows(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None, fmt: str
) -> None:
    settings = settings_for(trained)
    parts = write_parts(tickets, tmp_path / "in", fmt, parts=2)
    summary = score_batch(
        settings, job(trained, parts, tmp_path / "out", engine="ray"), registry=trained.registry
    )
    out = by_id(pq.read_table(str(tmp_path / "out")).to_pandas())
    assert summary.rows == len(out) == len(tickets)
    assert out["id"].tolist() == sorted(tickets["id"])
    assert set(out.loc[out["error"].notna(), "text"].str.strip()) == {""}
    assert "4111" not in " ".join(out["alternatives"])  # scores only; the text column is the caller's own
    recorded = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert recorded["rows"] == len(tickets)


def test_ray_output_replaces_its_own_folder_and_refuses_anyone_elses(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    settings = settings_for(trained)
    source = tmp_path / "tickets.parquet"
    tickets.to_parquet(source, index=False)
    output = tmp_path / "scores"
    for _ in range(2):  # a rerun replaces what the first run wrote
        score_batch(settings, job(trained, source, output, engine="ray"), registry=trained.registry)
    assert pq.read_table(str(output)).num_rows == len(tickets)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(UsageError, match="holds other files"):
        score_batch(settings, job(trained, source, foreign, engine="ray"), registry=trained.registry)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_bad_inputs_are_refused_before_any_scoring(trained: TrainedHome, tmp_path: Path) -> None:
    settings = settings_for(trained)
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"message": ["hello"]}).to_csv(wrong, index=False)
    for engine, output in (("local", "o.csv"), ("ray", "o-ray")):
        with pytest.raises(MissingColumnError, match=r"wrong\.csv: no column 'text'"):
            score_batch(
                settings,
                job(trained, wrong, tmp_path / output, engine=engine),
                registry=trained.registry,
            )
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pd.DataFrame({"text": ["a"]}).to_csv(mixed / "a.csv", index=False)
    pd.DataFrame({"text": ["b"]}).to_parquet(mixed / "b.parquet", index=False)
    with pytest.raises(UsageError, match="mixes formats"):
        score_batch(settings, job(trained, mixed, tmp_path / "o.csv"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileNotFoundError, match="no data files"):
        score_batch(settings, job(trained, empty, tmp_path / "o.csv"))
    with pytest.raises(UsageError, match="--engine 'spark'"):
        score_batch(settings, job(trained, wrong, tmp_path / "o.csv", engine="spark"))


def test_the_cli_scores_with_the_champion_on_its_own_ray(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKPILOT_MODEL_NAME", MODEL)
    source = tmp_path / "tickets.csv"
    tickets.to_csv(source, index=False)
    done = run_cli(
        "predict",
        "--model",
        "@champion",
        "--input",
        source,
        "--output",
        tmp_path / "scores",
        "--engine",
        "ray",
        "--ray-workers",
        "1",
        "--json",
        home=trained.home,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["engine"], result["rows"], result["unscorable_rows"]) == ("ray", len(tickets), 2)
    assert pq.read_table(str(tmp_path / "scores")).num_rows == len(tickets)
