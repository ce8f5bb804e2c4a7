"""What a retrain from feedback starts from and leaves behind in the registry: the champion with the snapshot
and split it was trained on and its lineage's frozen evaluation split, the inputs of the last retrain (so a
scheduled run with nothing new does nothing), and whether the new version may go to shadow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deskpilot import tags
from deskpilot.config import Settings
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.data.splits import DEFAULT_EVALUATION_FRACTION, EvaluationSplit, Split, frozen_evaluation
from deskpilot.domain import ModelRef
from deskpilot.errors import RolloutError, SnapshotNotFoundError, UsageError
from deskpilot.registry.base import ModelRegistry, ModelVersion
from deskpilot.rollout.actions import read_state
from deskpilot.rollout.rules import RolloutRules
from deskpilot.rollout.state import Stage
from deskpilot.training.pipeline import split_identity
from deskpilot.training.seen import model_split
from deskpilot.workflows import rollout
from deskpilot.workflows.audit import AuditRecorder


@dataclass(frozen=True)
class Base:
    """The champion as the loop builds on it."""

    version: ModelVersion
    lineage: dict[str, Any]
    params: dict[str, Any]
    snapshot: Snapshot
    split: Split
    evaluation: EvaluationSplit  # kept by every snapshot the loop derives from this one

    @property
    def family(self) -> str:
        return self.version.family

    @property
    def seed(self) -> int:
        return int(self.lineage.get("seed", 0))

    @property
    def validation_fraction(self) -> float:
        return float(self.lineage.get("validation_fraction", 0.2))

    @property
    def split_identity(self) -> dict[str, Any]:
        return split_identity(self.lineage)

    @property
    def root_source(self) -> str:
        """The data file at the start of the chain of snapshots (where a behavioral suite may lie)."""
        lineage = self.snapshot.metadata.lineage or {}
        return str(lineage.get("root_source_file") or self.snapshot.metadata.source_file)


def find_base(settings: Settings, registry: ModelRegistry, name: str) -> Base:
    """The serving champion, the snapshot under this home it was trained on, and its split."""
    number = read_state(registry, name).champion
    if number is None:
        raise UsageError(
            f"{name} has no champion to retrain from feedback: train one first "
            "(`deskpilot train --data FILE`)",
            details={"model": name},
        )
    ref = ModelRef(name, version=number)
    version = registry.get(ref)
    lineage = dict(registry.load(ref).manifest.lineage)
    digest = str(lineage.get("dataset_digest") or version.tags.get(tags.DATASET_DIGEST, ""))
    try:
        snapshot = SnapshotStore(settings.snapshot_dir).get(digest)
    except SnapshotNotFoundError as error:
        raise SnapshotNotFoundError(
            f"the champion {version.uri} was trained on snapshot {digest[:12] or '?'}, which is not under "
            f"{settings.snapshot_dir}: feedback is added to the champion's own rows, so copy that snapshot "
            "here from the home it was trained in",
            details={"model": version.uri, "digest": digest},
        ) from error
    params = lineage.get("params")
    record = lineage.get("evaluation_split")
    fraction = DEFAULT_EVALUATION_FRACTION
    if isinstance(record, dict):
        fraction = float(record.get("fraction", fraction))
    return Base(
        version=version,
        lineage=lineage,
        params=dict(params) if isinstance(params, dict) else {},
        snapshot=snapshot,
        split=model_split(snapshot, lineage),
        evaluation=frozen_evaluation(snapshot, fraction=fraction),
    )


def inputs_key(digest: str, family: str, seed: int) -> str:
    """What makes two retrains the same: the snapshot they would train on, the family and the seed."""
    return f"{digest}/{family}/{seed}"


def last_inputs(registry: ModelRegistry, name: str) -> str | None:
    return registry.model_tag(name, tags.FEEDBACK_LAST_INPUTS)


def remember(registry: ModelRegistry, name: str, inputs: str, consumed_until: str | None) -> None:
    """Record the inputs and the last verdict a retrain consumed, once its version is registered."""
    registry.set_model_tag(name, tags.FEEDBACK_LAST_INPUTS, inputs)
    if consumed_until is not None:
        registry.set_model_tag(name, tags.FEEDBACK_CONSUMED, consumed_until)


def to_shadow(
    settings: Settings,
    registry: ModelRegistry,
    audit: AuditRecorder,
    version: ModelVersion,
    rules: RolloutRules,
) -> str:
    """Put a gated version in shadow when the policy allows and no one else's challenger is staged: a canary
    is never demoted, and a shadow put there by hand is not replaced (one from an earlier retrain is)."""
    if not rules.retrain_to_shadow:
        return "not put in shadow: the policy's rollout.retrain_to_shadow is false"
    state = read_state(registry, version.name)
    if state.challenger is not None:
        staged = ModelRef(version.name, version=state.challenger).uri
        if state.stage is Stage.CANARY:
            return f"not put in shadow: {staged} is in canary"
        if tags.FEEDBACK_PARENT not in registry.get(ModelRef(version.name, version=state.challenger)).tags:
            return f"not put in shadow: {staged} is in shadow, put there by hand"
    try:
        rollout.promote(
            settings,
            version.uri,
            to=str(Stage.SHADOW),
            reason="retrained from feedback; its gate passed",
            registry=registry,
            audit=audit,
        )
    except RolloutError as error:
        return f"not put in shadow: {error.message}"
    return f"{version.uri} is in shadow"
