"""Batch scoring on both engines against the online service: one predictor, the same answer for every row.

A local Ray (two CPUs, a small object store) starts once for the module; the engine joins it rather than
starting its own, as it would join a cluster given ``--ray-address``. One CLI test starts its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deskpilot.batch import ray_engine
from deskpilot.batch.ray_engine import SUMMARY_FILE
from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import DataFileNotFoundError, DataFormatError, MissingColumnError, UsageError
from deskpilot.workflows.build import build_redactor
from deskpilot.workflows.scoring import BatchJob, score_batch
from tests.helpers import bundled_subset, run_cli
from tests.integration.api_fixtures import ACME_KEY, MODEL, TrainedHome, running, settings_for, trained_home
from tests.integration.test_batch_compare import recount

pytestmark = pytest.mark.slow

PII = [
    "my card 4111 1111 1111 1111 never arrived, write to jane.doe@example.com",
    "call me on +44 20 7946 0958 about the top up that failed",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("batch") / "home", versions=2)


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


def score_both(
    trained: TrainedHome, tmp_path: Path, local_in: Path, ray_in: Path, **changes: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The local engine's and the Ray engine's output, each in the order it was written."""
    settings = settings_for(trained)
    score_batch(
        settings, job(trained, local_in, tmp_path / "local.parquet", **changes), registry=trained.registry
    )
    score_batch(
        settings,
        job(trained, ray_in, tmp_path / "ray-out", engine="ray", **changes),
        registry=trained.registry,
    )
    return (
        pq.read_table(str(tmp_path / "local.parquet")).to_pandas(),
        pq.read_table(str(tmp_path / "ray-out")).to_pandas(),
    )


def served_answers(settings: Settings, trained: TrainedHome, texts: list[str]) -> list[dict[str, Any]]:
    items = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    answers: list[dict[str, Any]] = []
    with running(settings, registry=trained.registry) as server, server.client(ACME_KEY) as client:
        for start in range(0, len(items), 16):
            answer = client.post("/v1/triage/batch", json={"items": items[start : start + 16]})
            assert answer.status_code == 200, answer.text
            answers += answer.json()["items"]
    return answers


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_numeric_ids_and_missing_texts_are_the_same_on_every_path(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None, fmt: str
) -> None:
    texts: list[str | None] = [*tickets["text"].head(10), None, "", "  ", *tickets["text"].iloc[10:14]]
    ids = pd.array([*range(1, 8), None, *range(9, len(texts) + 1)], dtype="Int64")
    frame = pd.DataFrame({"id": ids, "text": texts})
    frame.loc[3, "text"] = None
    source = tmp_path / f"tickets.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(source, index=False)
    else:
        frame.to_json(source, orient="records", lines=True)
    local, ray = score_both(trained, tmp_path, source, write_parts(frame, tmp_path / "parts", fmt, parts=3))
    pd.testing.assert_frame_equal(local, ray)
    expected_ids = [None if pd.isna(i) else str(i) for i in ids]
    assert ray["id"].tolist() == expected_ids  # "1", never "1.0"; a missing id stays missing
    assert ray["text"].tolist() == [None if t is None else t for t in frame["text"]]  # never "None"/"nan"
    unscorable = ray["error"].notna()
    assert unscorable.tolist() == [not (isinstance(t, str) and t.strip()) for t in frame["text"]]
    scorable = ray[~unscorable]
    online = served_answers(settings_for(trained), trained, scorable["text"].tolist())
    assert [a["intent"] for a in online] == scorable["intent"].tolist()
    assert [a["route"] for a in online] == scorable["route"].tolist()
    assert [a["confidence"] for a in online] == pytest.approx(scorable["confidence"].tolist(), abs=1e-6)


def test_pii_is_redacted_before_the_model_sees_it(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    patterns = ["ALL=.+"]  # a custom pattern that hides the whole message from the model
    texts = [*tickets["text"].head(8), *PII]
    model = trained.registry.load(ModelRef(MODEL, version=trained.versions[0]))
    redacted = build_redactor(patterns).redact_many(texts)[0]
    on_raw = model.predict(texts)
    on_redacted = model.predict(redacted)
    assert len({p.intent for p in on_raw}) > 1
    assert len({p.intent for p in on_redacted}) == 1
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(len(texts))], "text": texts})
    frame.to_parquet(tmp_path / "pii.parquet", index=False)
    local, ray = score_both(
        trained, tmp_path, tmp_path / "pii.parquet", tmp_path / "pii.parquet", pii_patterns=patterns
    )
    for out in (local, ray):
        assert out["text"].tolist() == texts  # the caller's own text comes back as it was
        assert out["intent"].tolist() == [p.intent for p in on_redacted]
        assert out["confidence"].tolist() == pytest.approx([p.confidence for p in on_redacted], abs=1e-6)


def test_csv_header_spaces_and_quoted_newlines_read_as_the_local_engine_reads_them(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    texts = tickets["text"].head(6).tolist()
    texts[1] = texts[1] + "\nsecond line, with a comma"
    body = "".join(f'{i},"{t}"\n' for i, t in enumerate(texts, start=1))
    source = tmp_path / "in.csv"
    source.write_text(" id , text \n" + body, encoding="utf-8")
    local, ray = score_both(trained, tmp_path, source, source)
    pd.testing.assert_frame_equal(local, ray)
    assert ray["id"].tolist() == [str(i) for i in range(1, 7)]
    assert ray["text"].tolist() == texts


def test_ray_keeps_the_input_order(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    parts = write_parts(tickets, tmp_path / "parts", "parquet", parts=4)
    summary = score_batch(
        settings_for(trained),
        job(trained, parts, tmp_path / "out", engine="ray", batch_rows=5),
        registry=trained.registry,
    )
    assert summary.rows == len(tickets)
    assert pq.read_table(str(tmp_path / "out")).column("id").to_pylist() == tickets["id"].tolist()


def test_a_jsonl_record_without_text_is_a_row_not_a_refusal(
    trained: TrainedHome, tmp_path: Path, ray_cluster: None
) -> None:
    records = [
        {"id": "a", "subject": "hello"},
        {"id": "b", "text": "my card never arrived"},
        {"text": "top up"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    local, ray = score_both(trained, tmp_path, source, source, batch_rows=1)
    pd.testing.assert_frame_equal(local, ray)
    assert ray["id"].tolist() == ["a", "b", None]  # one column set for the whole job
    assert ray["error"].tolist() == ["text_empty", None, None]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"id,text\n1,caf\xe9 card\n", "not UTF-8"),
        (b"id,text\n1,fine\n2\n", "Expected 2 columns, got 1"),
    ],
)
def test_malformed_csv_parts_are_refused_naming_the_file_before_ray_starts(
    trained: TrainedHome, tmp_path: Path, content: bytes, reason: str
) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame({"id": ["0"], "text": ["a fine row"]}).to_csv(parts / "a.csv", index=False)
    (parts / "b.csv").write_bytes(content)
    with pytest.raises(DataFormatError, match=rf"b\.csv: cannot parse as CSV: .*{reason}"):
        score_batch(
            settings_for(trained),
            job(trained, parts, tmp_path / "out", engine="ray"),
            registry=trained.registry,
        )
    assert not (tmp_path / "out").exists()


def test_a_part_without_the_text_column_is_refused_before_ray_starts(
    trained: TrainedHome, tmp_path: Path
) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame({"text": ["a"]}).to_parquet(parts / "a.parquet", index=False)
    pd.DataFrame({"body": ["b"]}).to_parquet(parts / "b.parquet", index=False)
    with pytest.raises(MissingColumnError, match=r"b\.parquet: no column 'text'"):
        score_batch(
            settings_for(trained),
            job(trained, parts, tmp_path / "out", engine="ray"),
            registry=trained.registry,
        )


def test_parts_the_driver_cannot_see_never_replace_the_output(
    trained: TrainedHome,
    tickets: pd.DataFrame,
    tmp_path: Path,
    ray_cluster: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray.data

    settings = settings_for(trained)
    source = tmp_path / "tickets.parquet"
    tickets.to_parquet(source, index=False)
    output = tmp_path / "scores"
    modes: list[int] = []
    counted = ray_engine._count

    def count(folder: Path) -> tuple[int, int, int]:
        modes.append(folder.stat().st_mode & 0o777)
        return counted(folder)

    monkeypatch.setattr(ray_engine, "_count", count)
    score_batch(settings, job(trained, source, output, engine="ray"), registry=trained.registry)
    assert modes == [0o700]  # nobody else reads the parts while they are written
    umask = os.umask(0o022)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o777 & ~umask  # the finished output is as readable as any folder
    before = sorted(p.name for p in output.iterdir())

    elsewhere = tmp_path / "a-worker's-own-disk"
    written = ray.data.Dataset.write_parquet

    def write_on_the_workers_disk(self: Any, path: str, **kwargs: Any) -> None:
        written(self, str(elsewhere), **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "write_parquet", write_on_the_workers_disk)
    with pytest.raises(UsageError, match=rf"hold 0 of the input's {len(tickets)} rows"):
        score_batch(settings, job(trained, source, output, engine="ray"), registry=trained.registry)
    assert sorted(p.name for p in output.iterdir()) == before
    assert pq.read_table(str(output)).num_rows == len(tickets)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ray_scores_champion_and_challenger_side_by_side_as_the_local_engine_does(
    trained: TrainedHome, tmp_path: Path, ray_cluster: None
) -> None:
    frame = bundled_subset(labels=8, per_label=5, seed=11)
    frame.loc[frame.index[::4], "label"] = None
    frame.insert(0, "id", [f"t{i:03d}" for i in range(len(frame))])
    frame.loc[len(frame)] = ["t999", "", "card_arrival"]
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    challenger = f"models:/{MODEL}/{trained.versions[1]}"
    local, ray = score_both(
        trained,
        tmp_path,
        tmp_path / "in.parquet",
        write_parts(frame, tmp_path / "parts", "parquet", parts=3),
        challenger_uri=challenger,
        report_dir=tmp_path / "report",
    )
    pd.testing.assert_frame_equal(local, ray)
    assert ray.columns[-4:].tolist() == [
        "challenger_intent",
        "challenger_confidence",
        "challenger_route",
        "agrees",
    ]
    report = json.loads((tmp_path / "report" / "comparison.json").read_text())  # the Ray job's, written last
    assert report["challenger"] == challenger
    recount(ray.astype(object).where(ray.notna(), "").astype(str), report)


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param(
            "jsonl",
            marks=pytest.mark.xfail(
                strict=True,
                reason="Ray 2.60's read_json(lines=True) parses with pandas, which turns the ids into floats "
                "before DeskPilot sees them (the local engine keeps them)",
            ),
        ),
        "parquet",
    ],
)
def test_large_integer_ids_beside_missing_ones_keep_every_digit_on_both_engines(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None, fmt: str
) -> None:
    big = 1234567890123456789  # past 2**53: through a float it would be written 1.2345678901234568e+18
    texts = tickets["text"].head(3).tolist()
    source = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        records = [{"id": big, "text": texts[0]}, {"id": None, "text": texts[1]}, {"text": texts[2]}]
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        ids = pd.array([big, None, big + 1], dtype="Int64")
        pd.DataFrame({"id": ids, "text": texts}).to_parquet(source, index=False)
    local, ray = score_both(trained, tmp_path, source, source)
    expected = [str(big), None, None] if fmt == "jsonl" else [str(big), None, str(big + 1)]
    assert local["id"].tolist() == ray["id"].tolist() == expected


def test_blank_lines_above_a_csv_header_are_not_scored_as_a_ticket(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    texts = tickets["text"].head(2).tolist()
    source = tmp_path / "in.csv"
    body = pd.DataFrame({"id": ["1", "2"], "text": texts}).to_csv(index=False)
    source.write_text("\n" + body, encoding="utf-8")
    local, ray = score_both(trained, tmp_path, source, source)
    pd.testing.assert_frame_equal(local, ray)
    assert ray["id"].tolist() == ["1", "2"]
    assert ray["text"].tolist() == texts


def test_pq_and_ndjson_parts_are_read_by_ray(
    trained: TrainedHome, tickets: pd.DataFrame, tmp_path: Path, ray_cluster: None
) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    tickets.iloc[:10].to_parquet(parts / "a.parquet", index=False)
    tickets.iloc[10:].to_parquet(parts / "b.pq", index=False)
    single = tmp_path / "in.ndjson"
    tickets.to_json(single, orient="records", lines=True)
    for source, output in ((parts, tmp_path / "out-pq"), (single, tmp_path / "out-ndjson")):
        summary = score_batch(
            settings_for(trained), job(trained, source, output, engine="ray"), registry=trained.registry
        )
        assert summary.rows == len(tickets)
        assert pq.read_table(str(output)).column("id").to_pylist() == tickets["id"].tolist()
