"""What DeskPilot needs from a model registry, independent of the backend that provides it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deskpilot import tags
from deskpilot.domain import ModelRef
from deskpilot.models.artifact import TriageModel

ARTIFACT_KEY = "triage_model"
DOCUMENTS_DIR = "documents"
# the documents every registered version carries (see training.pipeline)
MODEL_CARD = "model_card.md"
GATE_DECISION = "gate_decision.json"
EVALUATION = "evaluation.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where it came from, how it scored, which aliases point at it."""

    name: str
    version: str
    created_at: str
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return ModelRef(self.name, version=self.version).uri

    @property
    def family(self) -> str:
        return self.tags.get(tags.FAMILY, "?")


@dataclass(frozen=True)
class RunRecord:
    """What a training run logs beside the model: hyperparameters, metrics and lineage tags."""

    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    documents: dict[str, str] = field(default_factory=dict)  # file name -> text, stored with the run


class ModelRegistry(ABC):
    @abstractmethod
    def register(self, model: TriageModel, *, name: str, record: RunRecord) -> ModelVersion:
        """Log the run and the artifact, then create a new version; nothing is registered on failure."""

    @abstractmethod
    def get(self, ref: ModelRef) -> ModelVersion:
        """The version a URI names; :class:`ModelNotFoundError` if there is none."""

    @abstractmethod
    def load(self, ref: ModelRef) -> TriageModel:
        """Fetch and load the artifact of a version."""

    @abstractmethod
    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, or of every model), newest first."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    @abstractmethod
    def alias_version(self, name: str, alias: str) -> str | None:
        """The version an alias points at, or ``None``."""

    @abstractmethod
    def model_tag(self, name: str, key: str) -> str | None:
        """A tag of the registered model itself (not of a version), or ``None``."""

    @abstractmethod
    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on the registered model (one atomic write of one value)."""

    @abstractmethod
    def claim(self, name: str, version: str, key: str, owner: str) -> str:
        """Write-once: record ``owner`` under ``key`` beside version ``version`` of ``name`` unless something
        is recorded there already, and return what is recorded. Of callers racing for one key, in any number
        of processes, exactly one gets its own ``owner`` back (the rollout's compare-and-set needs this)."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias; removing one that does not exist is not an error."""

    @abstractmethod
    def annotate(
        self,
        name: str,
        version: str,
        *,
        tags: Mapping[str, str] | None = None,
        documents: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        """Add tags, documents (file name -> text) or a description to an existing version."""

    @abstractmethod
    def document(self, name: str, version: str, filename: str) -> str | None:
        """A document stored with a version (at registration or by :meth:`annotate`), or ``None``."""
