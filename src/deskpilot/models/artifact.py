"""The self-contained model artifact and the object that serves it.

An artifact directory holds ``manifest.json`` (family, classes, routing threshold, lineage, validation
metrics) and ``model/`` (the family's own files). :class:`TriageModel` wraps a loaded classifier with its
threshold and turns texts into predictions and routes; batch scoring and the service both use it.
Families are imported lazily by name (``deskpilot.models.families``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deskpilot import __version__
from deskpilot.domain import IntentScore, Prediction, Route, RoutingThreshold
from deskpilot.errors import ArtifactError, UnknownFamilyError
from deskpilot.models.base import Classifier
from deskpilot.models.families import family_class

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
REFERENCE_FILE = "reference_profile.json"  # what the monitor compares production with (deskpilot.monitoring)


@dataclass(frozen=True)
class Manifest:
    family: str
    classes: list[str]
    routing: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    deskpilot_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def threshold(self) -> float | None:
        value = self.routing.get("threshold")
        return None if value is None else float(value)


class TriageModel:
    """A calibrated classifier plus the confidence threshold above which a ticket is routed ``auto``."""

    def __init__(
        self, classifier: Classifier, manifest: Manifest, *, reference: dict[str, Any] | None = None
    ) -> None:
        self.classifier = classifier
        self.manifest = manifest
        self.reference = reference
        """The reference profile written at training, as JSON data (``None`` for older artifacts)."""

    @classmethod
    def build(
        cls,
        classifier: Classifier,
        routing: RoutingThreshold,
        *,
        lineage: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        reference: dict[str, Any] | None = None,
    ) -> TriageModel:
        manifest = Manifest(
            family=classifier.family,
            classes=[str(c) for c in classifier.classes_],
            routing=asdict(routing),
            lineage=lineage or {},
            metrics=metrics or {},
        )
        return cls(classifier, manifest, reference=reference)

    @property
    def classes(self) -> list[str]:
        return self.manifest.classes

    def route_for(self, confidence: float) -> Route:
        threshold = self.manifest.threshold
        return Route.AUTO if threshold is not None and confidence >= threshold else Route.HUMAN

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.classifier.predict_proba(texts)

    def decide(self, probs: np.ndarray, *, top_k: int = 3) -> list[tuple[Prediction, Route]]:
        """Each row's prediction and route from its class probabilities: the one rule that the service,
        local batch scoring and Ray batch scoring share."""
        predictions = predictions_from_proba(probs, self.classes, top_k=top_k)
        return [(prediction, self.route_for(prediction.confidence)) for prediction in predictions]

    def predict(self, texts: Sequence[str], *, top_k: int = 3) -> list[Prediction]:
        """Top intent with its calibrated confidence and the ``top_k - 1`` runners-up, for each text."""
        if not texts:
            return []
        probs = self.predict_proba(texts)
        return predictions_from_proba(probs, self.classes, top_k=top_k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.classifier.save(directory / MODEL_DIR)
        (directory / MANIFEST_FILE).write_text(json.dumps(asdict(self.manifest), indent=2, sort_keys=True))
        if self.reference is not None:
            (directory / REFERENCE_FILE).write_text(json.dumps(self.reference, separators=(",", ":")))

    @classmethod
    def load(cls, directory: Path) -> TriageModel:
        """Load an artifact directory; anything missing or corrupt becomes an :class:`ArtifactError`."""
        manifest_path = directory / MANIFEST_FILE
        try:
            manifest = Manifest(**json.loads(manifest_path.read_text()))
        except FileNotFoundError as exc:
            raise ArtifactError(f"{directory}: not a DeskPilot model (no {MANIFEST_FILE})") from exc
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path}: unreadable manifest: {exc}") from exc
        if manifest.format_version > FORMAT_VERSION:
            raise ArtifactError(
                f"{directory}: artifact format {manifest.format_version} is newer than this DeskPilot "
                f"understands ({FORMAT_VERSION}); upgrade deskpilot"
            )
        try:
            classifier = family_class(manifest.family).load(directory / MODEL_DIR)
        except UnknownFamilyError as exc:
            raise ArtifactError(f"{directory}: {exc.message}") from exc
        except Exception as exc:  # a corrupt file fails differently in every library that reads one
            raise ArtifactError(
                f"{directory}: the {manifest.family} model files are unreadable: {exc}"
            ) from exc
        if [str(c) for c in classifier.classes_] != manifest.classes:
            raise ArtifactError(f"{directory}: the model's classes do not match its manifest")
        return cls(classifier, manifest, reference=_read_reference(directory / REFERENCE_FILE))


def _read_reference(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable reference profile: {exc}") from exc
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: the reference profile is not a JSON object")
    return payload


def predictions_from_proba(probs: np.ndarray, classes: Sequence[str], *, top_k: int = 3) -> list[Prediction]:
    """Turn a probability matrix into predictions, best first (vectorized partial sort)."""
    k = max(1, min(top_k, probs.shape[1]))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top_probs = np.take_along_axis(probs, top, axis=1)
    out = []
    for indices, scores in zip(top, top_probs, strict=True):
        runners_up = tuple(
            IntentScore(classes[i], float(p)) for i, p in zip(indices[1:], scores[1:], strict=True)
        )
        out.append(Prediction(classes[indices[0]], float(scores[0]), runners_up))
    return out
