"""The registry on MLflow: runs hold params, metrics and lineage; versions carry DeskPilot's tags and aliases.

MLflow is imported lazily (it takes seconds to import), and every MLflow failure becomes a DeskPilot error
with a code: a missing version or alias is ``model_not_found``, anything else ``registry_error``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd

from deskpilot import __version__, tags
from deskpilot.domain import ModelRef
from deskpilot.errors import ArtifactError, ModelNotFoundError, RegistryError
from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import ARTIFACT_KEY, DOCUMENTS_DIR, ModelRegistry, ModelVersion, RunRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "deskpilot"
_PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_model.py")
_MAX_PARAM_LENGTH = 6000
_MAX_DESCRIPTION_LENGTH = 5000
logger = logging.getLogger(__name__)


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(f"{what}: not found in the registry", details={"what": what}) from exc
        raise RegistryError(f"{what}: {exc.message}", details={"what": what}) from exc


def _is_server(tracking_uri: str) -> bool:
    """A tracking server (``http(s)://``) decides where artifacts go (``--serve-artifacts``) for all hosts."""
    return urlsplit(tracking_uri).scheme in ("http", "https")


class MlflowRegistry(ModelRegistry):
    """``tracking_uri`` is any MLflow URI (SQLite file, server URL); ``artifact_root`` is used for new
    experiments on a local store, so artifacts land beside the database instead of the working directory
    (never with a tracking server: a path on this host would be useless to the other replicas)."""

    def __init__(
        self, tracking_uri: str, *, artifact_root: Path | None = None, cache_dir: Path | None = None
    ):
        self.tracking_uri = tracking_uri
        self._artifact_root = artifact_root
        self._cache_dir = cache_dir
        self._client_instance: MlflowClient | None = None

    def _client(self) -> MlflowClient:
        if self._client_instance is None:
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client_instance = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client_instance

    def _experiment_id(self) -> str:
        client = self._client()
        with _mlflow_errors(f"experiment {EXPERIMENT!r}"):
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is not None:
                return str(experiment.experiment_id)
            location = None
            if self._artifact_root is not None and not _is_server(self.tracking_uri):
                self._artifact_root.mkdir(parents=True, exist_ok=True)
                location = self._artifact_root.resolve().as_uri()
            return str(client.create_experiment(EXPERIMENT, artifact_location=location))

    def register(self, model: TriageModel, *, name: str, record: RunRecord) -> ModelVersion:
        import mlflow

        client = self._client()
        experiment_id = self._experiment_id()
        with _mlflow_errors("training run"):
            run = client.create_run(experiment_id, tags=record.tags, run_name=f"{model.manifest.family}")
        run_id = run.info.run_id
        try:
            with _mlflow_errors("training run"), tempfile.TemporaryDirectory() as tmp:
                artifact = Path(tmp) / ARTIFACT_KEY
                model.save(artifact)
                client.log_batch(
                    run_id,
                    metrics=[_metric(k, v) for k, v in record.metrics.items()],
                    params=[_param(k, v) for k, v in record.params.items()],
                )
                for filename, text in record.documents.items():
                    client.log_text(run_id, text, f"{DOCUMENTS_DIR}/{filename}")
                with mlflow.start_run(run_id=run_id):
                    logged = mlflow.pyfunc.log_model(
                        name="model",
                        python_model=str(_PYFUNC_ENTRY),
                        artifacts={ARTIFACT_KEY: str(artifact)},
                        pip_requirements=[f"deskpilot=={__version__}"],
                        signature=_signature(),
                        input_example=pd.DataFrame({"text": ["my card has not arrived yet"]}),
                    )
                self._ensure_registered_model(name)
                version = client.create_model_version(
                    name,
                    source=logged.model_uri,
                    run_id=run_id,
                    tags=_version_tags(model, record),
                    model_id=logged.model_id,  # a tracking server refuses a models:/m-... source without it
                )
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        return self.get(ModelRef(name, version=str(version.version)))

    def _ensure_registered_model(self, name: str) -> None:
        try:
            with _mlflow_errors(f"registered model {name!r}"):
                self._client().get_registered_model(name)
        except ModelNotFoundError:
            with _mlflow_errors(f"registered model {name!r}"):
                self._client().create_registered_model(name)

    def get(self, ref: ModelRef) -> ModelVersion:
        client = self._client()
        version = ref.version
        if ref.alias is not None:
            version = self.alias_version(ref.name, ref.alias)
            if version is None:
                raise ModelNotFoundError(f"{ref.uri}: no version of {ref.name!r} has the alias {ref.alias!r}")
        with _mlflow_errors(ref.uri):
            found = client.get_model_version(ref.name, str(version))
        return self._to_version(found)

    def load(self, ref: ModelRef) -> TriageModel:
        import mlflow

        version = self.get(ref)
        self._client()
        if self._cache_dir is None:
            with _mlflow_errors(version.uri):
                path = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.uri))
            return TriageModel.load(_artifact_in(path, version.uri))
        destination = self._cache_dir / version.name / version.version
        if destination.is_dir() and not (destination / "artifacts" / ARTIFACT_KEY).is_dir():
            shutil.rmtree(destination, ignore_errors=True)  # left by a download before staging existed
        if not destination.is_dir():
            _download_into_cache(version.uri, destination)
        return TriageModel.load(_artifact_in(destination, version.uri))

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        client = self._client()
        query = "" if name is None else f"name = '{name}'"
        with _mlflow_errors("model versions"):
            found = client.search_model_versions(query)
            # search results leave aliases out; the registered model has them
            aliases: dict[tuple[str, str], list[str]] = {}
            for model_name in {v.name for v in found}:
                for alias, version in (client.get_registered_model(model_name).aliases or {}).items():
                    aliases.setdefault((model_name, str(version)), []).append(alias)
        versions = [
            replace(self._to_version(v), aliases=tuple(sorted(aliases.get((v.name, str(v.version)), []))))
            for v in found
        ]
        return sorted(versions, key=lambda v: (v.name, int(v.version)), reverse=True)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with _mlflow_errors(f"models:/{name}/{version}"):
            self._client().set_registered_model_alias(name, alias, version)

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            with _mlflow_errors(f"registered model {name!r}"):
                aliases = self._client().get_registered_model(name).aliases or {}
        except ModelNotFoundError:
            return None
        version = aliases.get(alias)
        return None if version is None else str(version)

    def model_tag(self, name: str, key: str) -> str | None:
        try:
            with _mlflow_errors(f"registered model {name!r}"):
                tags = self._client().get_registered_model(name).tags or {}
        except ModelNotFoundError:
            return None
        value = tags.get(key)
        return None if value is None else str(value)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with _mlflow_errors(f"registered model {name!r}"):
            self._client().set_registered_model_tag(name, key, value)

    def claim(self, name: str, version: str, key: str, owner: str) -> str:
        """A parameter of the version's run: MLflow stores a run's parameters write-once (a unique key in its
        database, on a tracking server too), so a second value for ``key`` is refused, atomically."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        with _mlflow_errors(f"models:/{name}/{version}"):
            run_id = client.get_model_version(name, version).run_id
        if not run_id:
            logger.warning("models:/%s/%s has no run to hold the claim %s: unclaimed", name, version, key)
            return owner
        try:
            client.log_param(run_id, key, owner)
            return owner
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise RegistryError(f"claim {key}: {exc.message}", details={"what": key}) from exc
        with _mlflow_errors(f"run {run_id}"):
            held = client.get_run(run_id).data.params.get(key)
        if held is None:  # refused for another reason (a deleted run): the revision check is all there is
            logger.warning("the run of models:/%s/%s cannot hold the claim %s: unclaimed", name, version, key)
            return owner
        return str(held)

    def delete_alias(self, name: str, alias: str) -> None:
        if self.alias_version(name, alias) is None:
            return
        with _mlflow_errors(f"models:/{name}@{alias}"):
            self._client().delete_registered_model_alias(name, alias)

    def annotate(
        self,
        name: str,
        version: str,
        *,
        tags: Mapping[str, str] | None = None,
        documents: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        client = self._client()
        found = self.get(ModelRef(name, version=version))
        with _mlflow_errors(found.uri):
            for key, value in (tags or {}).items():
                client.set_model_version_tag(name, version, key, value)
            if description is not None:
                client.update_model_version(name, version, description=_fit_description(description))
            if documents and found.run_id is None:
                raise RegistryError(f"{found.uri}: the version has no run to store documents with")
            for filename, text in (documents or {}).items():
                client.log_text(str(found.run_id), text, f"{DOCUMENTS_DIR}/{filename}")

    def document(self, name: str, version: str, filename: str) -> str | None:
        found = self.get(ModelRef(name, version=version))
        if found.run_id is None:
            return None
        client = self._client()
        with _mlflow_errors(found.uri):
            listed = {Path(f.path).name for f in client.list_artifacts(found.run_id, DOCUMENTS_DIR)}
            if filename not in listed:
                return None
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(found.run_id, f"{DOCUMENTS_DIR}/{filename}", tmp)
                return Path(path).read_text(encoding="utf-8")

    def _to_version(self, found: Any) -> ModelVersion:
        metrics: dict[str, float] = {}
        if found.run_id:
            with _mlflow_errors(f"run {found.run_id}"):
                metrics = dict(self._client().get_run(found.run_id).data.metrics)
        created = datetime.fromtimestamp(found.creation_timestamp / 1000, tz=UTC)
        return ModelVersion(
            name=found.name,
            version=str(found.version),
            created_at=created.isoformat(timespec="seconds"),
            aliases=tuple(sorted(found.aliases or ())),
            run_id=found.run_id,
            tags=dict(found.tags or {}),
            metrics=metrics,
        )


def _version_tags(model: TriageModel, record: RunRecord) -> dict[str, str]:
    manifest = model.manifest
    routing = manifest.routing
    found = {
        tags.FAMILY: manifest.family,
        tags.CLASSES: str(len(manifest.classes)),
        tags.THRESHOLD: "none" if routing.get("threshold") is None else f"{routing['threshold']:.6f}",
        tags.TARGET_PRECISION: str(routing.get("target_precision")),
        tags.AUTO_COVERAGE: f"{routing.get('coverage', 0.0):.4f}",
    }
    found.update({k: v for k, v in record.tags.items() if k.startswith("deskpilot.")})
    return found


def _fit_description(text: str) -> str:
    """MLflow's SQL store caps a version description at 5,000 characters; the full text is a document."""
    if len(text) <= _MAX_DESCRIPTION_LENGTH:
        return text
    cut = text[: _MAX_DESCRIPTION_LENGTH - 200].rsplit("\n", 1)[0]
    return f"{cut}\n\n… (truncated; the full text is stored with the run under {DOCUMENTS_DIR}/)"


def _signature() -> Any:
    """What ``mlflow models serve`` accepts and returns: a ``text`` column in, intent/confidence/route out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema(
            [ColSpec("string", "intent"), ColSpec("double", "confidence"), ColSpec("string", "route")]
        ),
    )


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric

    return Metric(key=key, value=float(value), timestamp=int(datetime.now(UTC).timestamp() * 1000), step=0)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key=key, value=str(value)[:_MAX_PARAM_LENGTH])


def _artifact_in(path: Path, uri: str) -> Path:
    artifact = path / "artifacts" / ARTIFACT_KEY
    if not artifact.is_dir():
        raise ArtifactError(f"{uri}: the registered model has no DeskPilot artifact")
    return artifact


def _download_into_cache(uri: str, destination: Path) -> None:
    """Download into a private staging folder, then rename it into place: a folder at ``destination`` is
    always a whole copy, whichever of the processes sharing the cache (workers, replicas on one volume)
    downloaded it. A process that loses the rename uses the winner's copy."""
    import mlflow

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        with _mlflow_errors(uri):
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
        _artifact_in(staging, uri)
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
