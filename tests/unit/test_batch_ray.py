"""The Ray engine's guards, without a cluster: errors unwrapped, CPUs, output location, atomic replacement."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deskpilot.batch import ray_engine
from deskpilot.batch.parts import InputLayout
from deskpilot.batch.predictor import FramePredictor
from deskpilot.batch.ray_engine import RayOptions, score_with_ray
from deskpilot.config import Settings
from deskpilot.domain import RoutingThreshold
from deskpilot.errors import BatchEngineUnavailableError, DataFormatError, MissingColumnError, UsageError
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from deskpilot.workflows.scoring import BatchJob, score_batch
from tests.helpers import bundled_subset


class NoLoading:
    """A registry that fails the test if a model is loaded."""

    def load(self, ref: object) -> TriageModel:
        raise AssertionError("the model was loaded before the job was checked")


@pytest.fixture(scope="module")
def predictor() -> FramePredictor:
    frame = bundled_subset(labels=3, per_label=10)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist())
    return FramePredictor(TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100)))


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "tickets.csv"
    path.parent.mkdir()
    pd.DataFrame({"id": ["a"], "text": ["my card never arrived"]}).to_csv(path, index=False)
    return path


def test_an_error_raised_in_an_actor_comes_back_as_the_deskpilot_error_it_carries() -> None:
    exceptions = pytest.importorskip("ray.exceptions")
    inner = MissingColumnError("part-3.jsonl: no column 'text'")
    wrapped = exceptions.RayTaskError(
        "MapBatches(_RayPredictor)", "Traceback ...", inner
    ).as_instanceof_cause()
    with pytest.raises(MissingColumnError) as caught, ray_engine._ray_errors(Path("in")):
        raise RuntimeError("the streaming executor failed") from wrapped
    assert str(caught.value) == "part-3.jsonl: no column 'text'"
    assert not isinstance(caught.value, exceptions.RayError)


def test_an_arrow_read_error_in_ray_is_a_format_error_naming_the_input() -> None:
    exceptions = pytest.importorskip("ray.exceptions")
    import pyarrow as pa

    inner = pa.ArrowInvalid("JSON parse error: Column(/text) changed from number to string in row 3")
    wrapped = exceptions.RayTaskError("ReadJSON", "Traceback ...", inner).as_instanceof_cause()
    expected = r"^parts: cannot read the input: JSON parse error"
    with pytest.raises(DataFormatError, match=expected), ray_engine._ray_errors(Path("parts")):
        raise wrapped


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), ray_engine._ray_errors(Path("in")):
        raise KeyError("x")


@pytest.mark.parametrize("cpus", [0, 1])
def test_a_cluster_with_fewer_than_two_cpus_is_refused(cpus: int) -> None:
    with pytest.raises(BatchEngineUnavailableError, match=f"has {cpus} CPU.*at least 2"):
        ray_engine._workers(RayOptions(), cpus)


def test_workers_leave_one_cpu_for_reading_and_writing() -> None:
    assert ray_engine._workers(RayOptions(), 2) == 1
    assert ray_engine._workers(RayOptions(workers=3), 4) == 3
    with pytest.raises(UsageError, match="at most 3 actors"):
        ray_engine._workers(RayOptions(workers=4), 4)


def test_a_local_ray_on_one_cpu_still_gets_a_cpu_for_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    started: dict[str, Any] = {}
    monkeypatch.setattr(ray_engine.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with ray_engine._ray_session(RayOptions(progress=False)):
        pass
    assert started["num_cpus"] == 2
    with ray_engine._ray_session(RayOptions(workers=3, progress=False)):
        pass
    assert started["num_cpus"] == 4


@pytest.mark.parametrize("where", [".", "..", "in", "in/scores", "in/tickets.csv"])
def test_outputs_that_would_replace_the_input_or_the_current_folder_are_refused(
    predictor: FramePredictor,
    tickets: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    monkeypatch.chdir(tmp_path / "in")
    output = Path(where) if where in (".", "..") else tmp_path / where
    with pytest.raises(UsageError, match="--output"):
        score_with_ray(predictor, tmp_path / "in", output, batch_rows=10, options=RayOptions(progress=False))
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["tickets.csv"]


def test_replace_puts_the_old_output_back_when_the_new_one_cannot_move_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output, staging = tmp_path / "scores", tmp_path / ".scores.partial"
    output.mkdir()
    (output / "old.parquet").write_text("old")
    staging.mkdir()
    (staging / "new.parquet").write_text("new")
    rename = Path.rename

    def failing(self: Path, target: Any) -> Path:
        if self == staging:
            raise OSError(28, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(UsageError, match=r"No space left on device.*previous output is kept"):
        ray_engine._replace(staging, output)
    assert [p.name for p in output.iterdir()] == ["old.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scores.partial", "scores"]


def test_ray_options_need_the_ray_engine(tmp_path: Path, tickets: Path) -> None:
    for changes in ({"ray_address": "ray://head:10001"}, {"ray_workers": 2}):
        job = BatchJob("models:/m/1", tickets, tmp_path / "o.csv", engine="local", **changes)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="--engine ray only"):
            score_batch(Settings(home=tmp_path / "home"), job, registry=NoLoading())  # type: ignore[arg-type]


def test_a_missing_ray_is_reported_with_the_extra_before_the_model_loads(
    tmp_path: Path, tickets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray.data", None)  # import ray.data now raises ImportError
    job = BatchJob("models:/m/1", tickets, tmp_path / "out", engine="ray")
    with pytest.raises(BatchEngineUnavailableError, match=r"pip install 'deskpilot\[ray\]'"):
        score_batch(Settings(home=tmp_path / "home"), job, registry=NoLoading())  # type: ignore[arg-type]


def layout_of(parts: list[Path], fmt: str, rows: int = 3) -> InputLayout:
    return InputLayout(tuple(parts), fmt, has_id=False, header=None, rows=rows)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "suffixes"), [("parquet", [".parquet", ".pq"]), ("jsonl", [".ndjson"])])
def test_every_suffix_the_parts_accept_is_read_by_ray(fmt: str, suffixes: list[str]) -> None:
    calls: list[dict[str, Any]] = []

    class Data:
        def read_parquet(self, paths: list[str], **kwargs: Any) -> str:
            calls.append({"paths": paths, **kwargs})
            return "dataset"

        read_json = read_parquet

    class Ray:
        data = Data()

    parts = [Path(f"in/part{suffix}") for suffix in suffixes]
    assert ray_engine._read(Ray(), layout_of(parts, fmt)) == "dataset"
    assert calls[0]["paths"] == [str(p) for p in parts]
    # Ray's default filters drop .pq and .ndjson
    assert set(calls[0]["file_extensions"]) >= {suffix[1:] for suffix in suffixes}


def test_an_error_setting_up_the_read_is_a_format_error() -> None:
    class Data:
        def read_parquet(self, paths: list[str], **kwargs: Any) -> None:
            raise ValueError("No input files found to read with the following file extensions")

    class Ray:
        data = Data()

    with pytest.raises(DataFormatError, match=r"x\.pq: Ray cannot read the input: No input files"):
        ray_engine._read(Ray(), layout_of([Path("x.pq")], "parquet"))


@pytest.mark.parametrize(
    ("rows", "reason"), [(2, "the workers wrote fewer"), (4, "some rows were written more than once")]
)
def test_written_rows_must_match_the_input_exactly(rows: int, reason: str) -> None:
    with pytest.raises(UsageError, match=rf"hold {rows} of the input's 3 rows; {reason}"):
        ray_engine._check_complete(rows, layout_of([Path("a.csv")], "csv"), Path("out"), RayOptions())
    ray_engine._check_complete(3, layout_of([Path("a.csv")], "csv"), Path("out"), RayOptions())


def test_encoders_unpickled_in_an_actor_run_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from deskpilot.models import encoder

    started: list[int] = []
    monkeypatch.setattr(encoder.OnnxSentenceEncoder, "_start", lambda self, *a: started.append(self.threads))
    monkeypatch.setattr(encoder.Tokenizer, "from_str", staticmethod(lambda text: None))
    state = {
        "model_path": None,
        "tokenizer_path": Path("tokenizer.json"),
        "max_length": 8,
        "batch_size": 2,
        "threads": 0,
        "graph": b"graph",
        "tokenizer": "{}",
        "kept_bytes": True,
    }
    encoder.OnnxSentenceEncoder.__new__(encoder.OnnxSentenceEncoder).__setstate__(state)
    with encoder.threads_when_unpickled(1):
        encoder.OnnxSentenceEncoder.__new__(encoder.OnnxSentenceEncoder).__setstate__(state)
    encoder.OnnxSentenceEncoder.__new__(encoder.OnnxSentenceEncoder).__setstate__(state)
    assert started == [0, 1, 0]  # local behaviour unchanged outside the block


def test_actor_batches_keep_large_integer_ids_whole() -> None:
    import pyarrow as pa

    batch = pa.table({"id": pa.array([1234567890123456789, None], pa.int64()), "text": ["a", None]})
    frame = ray_engine._to_frame(batch)
    assert [None if v is pd.NA else str(v) for v in frame["id"]] == ["1234567890123456789", None]
