"""Train, then register: the second half of ``deskpilot train`` once the data is snapshotted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deskpilot.data.snapshots import Snapshot
from deskpilot.domain import ModelRef
from deskpilot.registry.base import CHAMPION, ModelRegistry, ModelVersion, RunRecord
from deskpilot.training.lineage import environment_tags
from deskpilot.training.run import Progress, TrainingConfig, TrainingResult, train_on_snapshot


@dataclass(frozen=True)
class RegisteredRun:
    version: ModelVersion
    result: TrainingResult
    became_champion: bool


def train_and_register(
    snapshot: Snapshot,
    config: TrainingConfig,
    registry: ModelRegistry,
    *,
    name: str,
    code_dir: Path,
    progress: Progress | None = None,
) -> RegisteredRun:
    """Train on the snapshot, register the version, and make it champion if the model has none yet."""
    result = train_on_snapshot(snapshot, config, progress=progress)
    lineage = result.model.manifest.lineage
    record = RunRecord(
        params={
            "family": config.family,
            "seed": config.seed,
            "validation_fraction": config.validation_fraction,
            "target_precision": config.target_precision,
            **{f"model.{k}": v for k, v in lineage.get("params", {}).items()},
        },
        metrics={f"val_{k}": v for k, v in result.metrics.items()},
        tags={
            "deskpilot.family": config.family,
            "deskpilot.dataset_digest": snapshot.digest,
            "deskpilot.source_file": snapshot.metadata.source_file,
            "deskpilot.seed": str(config.seed),
            **environment_tags(code_dir),
        },
    )
    if progress:
        progress(f"register as {name}")
    became_champion = registry.alias_version(name, CHAMPION) is None
    version = registry.register(result.model, name=name, record=record)
    if became_champion:
        registry.set_alias(name, CHAMPION, version.version)
        version = registry.get(ModelRef(name, version=version.version))
    return RegisteredRun(version=version, result=result, became_champion=became_champion)
