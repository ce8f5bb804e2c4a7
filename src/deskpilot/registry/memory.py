"""An in-memory registry for unit tests: the same contract as the MLflow one, no database.

Artifacts are saved to a private temporary folder, removed when the registry is collected or at exit.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from deskpilot import tags
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError
from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import ModelRegistry, ModelVersion, RunRecord


class InMemoryRegistry(ModelRegistry):
    def __init__(self) -> None:
        self._artifacts: dict[tuple[str, str], Path] = {}
        self._versions: dict[tuple[str, str], ModelVersion] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._documents: dict[tuple[str, str], dict[str, str]] = {}
        self._model_tags: dict[tuple[str, str], str] = {}
        self._claims: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="deskpilot-registry-"))
        weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)

    def register(self, model: TriageModel, *, name: str, record: RunRecord) -> ModelVersion:
        version = str(1 + sum(1 for n, _ in self._versions if n == name))
        path = self._root / name / version
        model.save(path)
        self._artifacts[(name, version)] = path
        self._versions[(name, version)] = ModelVersion(
            name=name,
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tags={tags.FAMILY: model.manifest.family, **record.tags},
            metrics=dict(record.metrics),
        )
        self._documents[(name, version)] = dict(record.documents)
        return self.get(ModelRef(name, version=version))

    def get(self, ref: ModelRef) -> ModelVersion:
        version = ref.version if ref.alias is None else self._aliases.get((ref.name, ref.alias))
        found = self._versions.get((ref.name, str(version)))
        if found is None:
            raise ModelNotFoundError(f"{ref.uri}: not found in the registry")
        aliases = tuple(
            sorted(a for (n, a), v in self._aliases.items() if n == ref.name and v == found.version)
        )
        return ModelVersion(
            found.name, found.version, found.created_at, aliases, None, found.tags, found.metrics
        )

    def load(self, ref: ModelRef) -> TriageModel:
        found = self.get(ref)
        return TriageModel.load(self._artifacts[(found.name, found.version)])

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        keys = sorted(
            (k for k in self._versions if name is None or k[0] == name), key=lambda k: (k[0], int(k[1]))
        )
        return [self.get(ModelRef(n, version=v)) for n, v in reversed(keys)]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        if (name, version) not in self._versions:
            raise ModelNotFoundError(f"models:/{name}/{version}: not found in the registry")
        self._aliases[(name, alias)] = version

    def alias_version(self, name: str, alias: str) -> str | None:
        return self._aliases.get((name, alias))

    def model_tag(self, name: str, key: str) -> str | None:
        return self._model_tags.get((name, key))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        if not any(n == name for n, _ in self._versions):
            raise ModelNotFoundError(f"registered model {name!r}: not found in the registry")
        self._model_tags[(name, key)] = value

    def claim(self, name: str, version: str, key: str, owner: str) -> str:
        self.get(ModelRef(name, version=version))
        with self._lock:
            return self._claims.setdefault((name, version, key), owner)

    def delete_alias(self, name: str, alias: str) -> None:
        self._aliases.pop((name, alias), None)

    def annotate(
        self,
        name: str,
        version: str,
        *,
        tags: Mapping[str, str] | None = None,
        documents: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        found = self.get(ModelRef(name, version=version))
        merged = {**found.tags, **(tags or {})}
        if description is not None:
            merged["mlflow.description"] = description
        self._versions[(name, version)] = replace(self._versions[(name, version)], tags=merged)
        self._documents.setdefault((name, version), {}).update(documents or {})

    def document(self, name: str, version: str, filename: str) -> str | None:
        self.get(ModelRef(name, version=version))
        return self._documents.get((name, version), {}).get(filename)
