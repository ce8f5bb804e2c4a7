"""Train a family on a dataset: check → snapshot → train → gate → register → audit, as one use case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskpilot.config import Settings
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.data.splits import DEFAULT_VALIDATION_FRACTION
from deskpilot.errors import AuditWriteError, UsageError
from deskpilot.evaluation.behavioral import BehavioralSuite
from deskpilot.evaluation.policy import Policy
from deskpilot.models.families import FAMILIES
from deskpilot.registry.base import ModelRegistry
from deskpilot.store.audit import AuditAction
from deskpilot.training.pipeline import RegisteredRun, train_and_register
from deskpilot.training.run import Progress, TrainingConfig
from deskpilot.training.seen import store_lookup
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, open_audit
from deskpilot.workflows.build import build_registry, load_policies
from deskpilot.workflows.datasets import load_and_validate, require_valid, store_snapshot
from deskpilot.workflows.evaluation import audit_gate, resolve_suite
from deskpilot.workflows.label_audit import load_flagged


@dataclass(frozen=True)
class TrainRequest:
    """Everything ``deskpilot train`` takes, as values."""

    data: Path
    family: str = "tfidf"
    text_column: str = "text"
    label_column: str = "label"
    seed: int = 0
    name: str | None = None  # default: the settings' model name
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    target_precision: float | None = None  # default: the settings' target
    params: dict[str, Any] = field(default_factory=dict)
    policy_file: Path | None = None
    suite_file: Path | None = None
    pii_patterns: list[str] | None = None
    drop_invalid: bool = False
    exclude_flagged: Path | None = None  # a label audit's JSON: its flagged rows are not trained on


@dataclass(frozen=True)
class TrainOutcome:
    run: RegisteredRun
    snapshot: Snapshot
    config: TrainingConfig
    audit: tuple[AuditReceipt, ...]


def train(
    settings: Settings,
    request: TrainRequest,
    *,
    progress: Progress | None = None,
    registry: ModelRegistry | None = None,
    audit: AuditRecorder | None = None,
) -> TrainOutcome:
    """Train ``request.family`` on ``request.data``, gate it against the champion, register it (champion
    if it is the first to pass, challenger otherwise) and audit the gate decision and any promotion."""
    say = progress or (lambda _message: None)
    if request.family not in FAMILIES:
        raise UsageError(f"unknown model family {request.family!r}; choose one of {', '.join(FAMILIES)}")
    config = TrainingConfig(
        family=request.family,
        seed=request.seed,
        validation_fraction=request.validation_fraction,
        target_precision=request.target_precision or settings.target_precision,
        params=request.params,
        cache_dir=settings.encoder_cache_dir,
        exclude=None if request.exclude_flagged is None else load_flagged(request.exclude_flagged),
    )
    policy = load_policies(request.policy_file).gate
    suite = resolve_suite(request.data, request.suite_file)
    say(f"validate {request.data}")
    checked = require_valid(
        load_and_validate(
            settings, request.data, text_column=request.text_column, label_column=request.label_column
        ),
        allow_invalid=request.drop_invalid,
    )
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.GATE)  # before the snapshot and minutes of training, not after
    snapshot = store_snapshot(
        settings, checked, pii_patterns=request.pii_patterns, drop_invalid=request.drop_invalid
    )
    say(f"snapshot {snapshot.digest[:12]} ({snapshot.metadata.rows:,} rows, PII redacted)")
    run, receipts = _register_and_audit(
        settings,
        snapshot,
        config,
        name=request.name,
        policy=policy,
        suite=suite,
        progress=progress,
        registry=registry,
        audit=audit,
    )
    return TrainOutcome(run, snapshot, config, receipts)


def train_snapshot(
    settings: Settings,
    snapshot: Snapshot,
    config: TrainingConfig,
    *,
    name: str | None = None,
    policy: Policy | None = None,
    suite: BehavioralSuite | None = None,
    progress: Progress | None = None,
    registry: ModelRegistry | None = None,
    audit: AuditRecorder | None = None,
) -> tuple[RegisteredRun, tuple[AuditReceipt, ...]]:
    """Train on a stored snapshot, gate, register, and audit: the part the demo repeats per family."""
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.GATE)
    return _register_and_audit(
        settings,
        snapshot,
        config,
        name=name,
        policy=policy,
        suite=suite,
        progress=progress,
        registry=registry,
        audit=audit,
    )


def _register_and_audit(
    settings: Settings,
    snapshot: Snapshot,
    config: TrainingConfig,
    *,
    name: str | None,
    policy: Policy | None,
    suite: BehavioralSuite | None,
    progress: Progress | None,
    registry: ModelRegistry | None,
    audit: AuditRecorder,
) -> tuple[RegisteredRun, tuple[AuditReceipt, ...]]:
    run = train_and_register(
        snapshot,
        config,
        registry or build_registry(settings),
        name=name or settings.model_name,
        policy=policy,
        suite=suite,
        progress=progress,
        snapshots=store_lookup(SnapshotStore(settings.snapshot_dir)),
    )
    entries: list[Callable[[], AuditReceipt]] = [lambda: audit_gate(audit, run.version.uri, run.decision)]
    if run.became_champion:
        entries.append(
            lambda: audit.record(
                AuditAction.PROMOTE,
                run.version.uri,
                "first version to pass its gate becomes the champion",
                {"to": "champion", "gate": run.decision.outcome},
            )
        )
    receipts, failed = [], []
    for write in entries:  # every entry is attempted: a lost gate entry must not hide the promotion's
        try:
            receipts.append(write())
        except AuditWriteError as error:
            failed.append(error)
    if failed:
        raise AuditWriteError(
            "; ".join(error.message for error in failed), details={"entries": [e.details for e in failed]}
        )
    return run, tuple(receipts)
