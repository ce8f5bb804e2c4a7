"""The MLflow registry on a real SQLite tracking store: register, resolve, load, aliases, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError, RegistryError
from deskpilot.registry.base import CHALLENGER, CHAMPION, RunRecord
from deskpilot.registry.mlflow_registry import MlflowRegistry
from deskpilot.training.pipeline import train_and_register
from deskpilot.training.run import TrainingConfig, TrainingResult, train_on_snapshot
from tests.helpers import NoRedaction, bundled_subset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingResult, object]:
    folder = tmp_path_factory.mktemp("data")
    path = folder / "small.csv"
    bundled_subset(labels=5, per_label=24).to_csv(path, index=False)
    table = read_table(path)
    snapshot = SnapshotStore(folder / "snaps").create(
        table, validate_table(table, DataContract()), NoRedaction()
    )
    return train_on_snapshot(snapshot, TrainingConfig(family="tfidf")), snapshot


def registry_in(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=tmp_path / "artifacts",
        cache_dir=tmp_path / "cache",
    )


def test_register_resolve_and_load(tmp_path: Path, trained: tuple[TrainingResult, object]) -> None:
    result, _ = trained
    registry = registry_in(tmp_path)
    record = RunRecord(
        params={"family": "tfidf"}, metrics={"val_accuracy": 0.9}, tags={"deskpilot.seed": "0"}
    )
    version = registry.register(result.model, name="triage", record=record)
    assert version.uri == "models:/triage/1"
    assert version.family == "tfidf"
    assert version.metrics["val_accuracy"] == 0.9
    assert version.tags["deskpilot.seed"] == "0"
    assert version.run_id
    assert (tmp_path / "artifacts").is_dir(), "artifacts must land beside the database, not in the CWD"

    registry.set_alias("triage", CHAMPION, "1")
    assert registry.get(ModelRef.parse("models:/triage@champion")).version == "1"
    loaded = registry.load(ModelRef.parse("models:/triage@champion"))
    texts = ["my card still has not arrived", "I want to top up by bank transfer"]
    assert [p.intent for p in loaded.predict(texts)] == [p.intent for p in result.model.predict(texts)]
    again = registry.load(ModelRef.parse("models:/triage/1"))
    assert again.manifest == loaded.manifest


def test_missing_names_versions_and_aliases(tmp_path: Path, trained: tuple[TrainingResult, object]) -> None:
    registry = registry_in(tmp_path)
    assert registry.alias_version("nobody", CHAMPION) is None
    with pytest.raises(ModelNotFoundError):
        registry.get(ModelRef.parse("models:/nobody/1"))
    registry.register(trained[0].model, name="triage", record=RunRecord({}, {}, {}))
    with pytest.raises(ModelNotFoundError):
        registry.get(ModelRef.parse("models:/triage/7"))
    with pytest.raises(ModelNotFoundError, match="alias 'champion'"):
        registry.get(ModelRef.parse("models:/triage@champion"))
    assert registry.versions("nobody") == []


def test_failed_registration_leaves_no_version(
    tmp_path: Path, trained: tuple[TrainingResult, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    registry = registry_in(tmp_path)

    def broken_upload(*args: object, **kwargs: object) -> None:
        from mlflow.exceptions import MlflowException

        raise MlflowException("artifact store unavailable")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", broken_upload)
    with pytest.raises(RegistryError, match="artifact store unavailable"):
        registry.register(trained[0].model, name="triage", record=RunRecord({}, {}, {}))
    assert registry.versions() == []
    from mlflow import MlflowClient

    runs = MlflowClient(registry.tracking_uri).search_runs([registry._experiment_id()])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_pipeline_sets_champion_once(tmp_path: Path, trained: tuple[TrainingResult, object]) -> None:
    _, snapshot = trained
    registry = registry_in(tmp_path)
    config = TrainingConfig(family="tfidf")
    first = train_and_register(snapshot, config, registry, name="triage")  # type: ignore[arg-type]
    second = train_and_register(snapshot, config, registry, name="triage")  # type: ignore[arg-type]
    assert first.version.aliases == (CHAMPION,)
    assert second.version.aliases == (CHALLENGER,)
    listed = registry.versions("triage")
    assert [(v.version, v.aliases) for v in listed] == [("2", (CHALLENGER,)), ("1", (CHAMPION,))]
    assert listed[0].tags["deskpilot.gate"] == "pass"
    card = registry.document("triage", "2", "model_card.md")
    assert card is not None
    assert "## Gate decision" in card
    assert "models:/triage/1" in card
    assert listed[0].tags["deskpilot.git_commit"] != ""


def test_the_model_cache_only_ever_holds_whole_copies(
    tmp_path: Path, trained: tuple[TrainingResult, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import mlflow.artifacts

    registry = registry_in(tmp_path)
    registry.register(trained[0].model, name="triage", record=RunRecord({}, {}, {}))
    real_download = mlflow.artifacts.download_artifacts
    first = threading.Event()

    def slow_download(*, artifact_uri: str, dst_path: str | None = None) -> str:
        """A download that shows its folders long before their files, as a slow network does."""
        whole = Path(
            real_download(artifact_uri=artifact_uri, dst_path=str(tmp_path / f"dl-{time.time_ns()}"))
        )
        target = Path(dst_path or tmp_path / "plain")
        for folder in sorted(p for p in whole.rglob("*") if p.is_dir()):
            (target / folder.relative_to(whole)).mkdir(parents=True, exist_ok=True)
        first.set()
        time.sleep(1.0)
        shutil.copytree(whole, target, dirs_exist_ok=True)
        return str(target)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", slow_download)
    cached = tmp_path / "cache" / "triage" / "1"
    cached.mkdir(parents=True)  # what an interrupted download used to leave: the folder, no artifact
    ref = ModelRef.parse("models:/triage/1")

    def load_after_the_first_started(index: int) -> object:
        if index:
            first.wait(30)
        return registry.load(ref)

    with ThreadPoolExecutor(3) as pool:  # processes sharing one cache (workers, replicas) race the same way
        loaded = list(pool.map(load_after_the_first_started, range(3)))
    texts = ["my card still has not arrived"]
    expected = trained[0].model.predict(texts)[0].intent
    assert all(model.predict(texts)[0].intent == expected for model in loaded)  # type: ignore[attr-defined]
    assert sorted(p.name for p in cached.parent.iterdir()) == ["1"], "no staging folder is left behind"
    assert registry.load(ref).predict(texts)[0].intent == expected  # from the cache, whole
