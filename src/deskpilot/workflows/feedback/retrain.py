"""``deskpilot retrain --from-feedback``: the champion's snapshot plus the corrections the guard accepts →
a new snapshot (its lineage recorded) → train on a split that keeps the champion's sides and the lineage's
frozen evaluation split → gate against the champion on that split → register → shadow when the policy
allows → audit.

Runnable on a schedule: verdicts are read cumulatively (corrections that lacked support last time may have
it now) and the guard compares them with the champion's rows, so what the champion already learned is no
change; a run whose inputs (the snapshot it would train on, the family, the seed) are those of the last
retrain has nothing to do. Exit statuses as ``gate``: 0 passed (or nothing to do), 1 gate failed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from deskpilot import tags
from deskpilot.config import Settings
from deskpilot.data.snapshots import LABEL, Snapshot, SnapshotStore, canonical_order, content_digest
from deskpilot.errors import UsageError
from deskpilot.models.families import FAMILIES
from deskpilot.registry.base import ModelRegistry
from deskpilot.store.audit import AuditAction
from deskpilot.store.base import DecisionStore
from deskpilot.training.pipeline import RegisteredRun
from deskpilot.training.run import ExcludedRows, PresetSplit, Progress, TrainingConfig
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, open_audit
from deskpilot.workflows.build import build_redactor, build_registry, existing_store_url, load_policies
from deskpilot.workflows.evaluation import resolve_suite
from deskpilot.workflows.feedback.champion import (
    Base,
    find_base,
    inputs_key,
    last_inputs,
    remember,
    to_shadow,
)
from deskpilot.workflows.feedback.derive import (
    SPLIT_COLUMN,
    derive_frame,
    label_index,
    side_counts,
    stored_split,
)
from deskpilot.workflows.feedback.guard import GuardOptions, GuardResult, apply_guard
from deskpilot.workflows.feedback.report import change_report, metrics_report, render_markdown
from deskpilot.workflows.feedback.verdicts import Reading, check_range, iso, read_verdicts, utc_now
from deskpilot.workflows.label_audit import load_flagged
from deskpilot.workflows.training import train_snapshot

REPORT_JSON = "feedback_report.json"
REPORT_MD = "feedback_report.md"


class Status(StrEnum):
    NOTHING_TO_DO = "nothing_to_do"
    DRY_RUN = "dry_run"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class RetrainRequest:
    since: datetime | None = None  # verdicts given at or after; default: every verdict in the store
    family: str | None = None  # default: the champion's family
    policy_file: Path | None = None
    seed: int | None = None  # default: the champion's seed
    guard: GuardOptions = field(default_factory=GuardOptions)
    dry_run: bool = False
    name: str | None = None
    report_dir: Path | None = None


@dataclass(frozen=True)
class RetrainOutcome:
    status: Status
    message: str
    report: dict[str, Any]
    run: RegisteredRun | None = None
    snapshot: Snapshot | None = None
    report_files: tuple[Path, Path] | None = None
    audit: tuple[AuditReceipt, ...] = ()

    @property
    def exit_code(self) -> int:
        return 1 if self.status is Status.FAILED else 0


def retrain_from_feedback(
    settings: Settings,
    request: RetrainRequest,
    *,
    progress: Progress | None = None,
    registry: ModelRegistry | None = None,
    store: DecisionStore | None = None,
    audit: AuditRecorder | None = None,
) -> RetrainOutcome:
    """Retrain the champion on its own rows and the accepted feedback; see the module docstring."""
    say = progress or (lambda _message: None)
    if request.family is not None and request.family not in FAMILIES:
        raise UsageError(f"unknown model family {request.family!r}; choose one of {', '.join(FAMILIES)}")
    policies = load_policies(request.policy_file)  # a broken policy fails before any work
    name = request.name or settings.model_name
    registry = registry or build_registry(settings)
    base = find_base(settings, registry, name)
    family = request.family or base.family
    seed = base.seed if request.seed is None else request.seed
    until = utc_now()
    check_range(request.since, until)
    say(f"read the feedback given {iso(request.since) or 'from the start'} … {iso(until)}")
    reading = _read(settings, store, request.since, until)
    labels = frozenset(base.snapshot.metadata.label_counts)
    guard = apply_guard(reading.by_text(), label_index(base.snapshot.frame), labels, request.guard)
    frame = canonical_order(
        derive_frame(
            base.snapshot,
            base.split,
            guard.accepted,
            seed=seed,
            validation_fraction=base.validation_fraction,
            evaluation=base.evaluation,
        )
    )
    after = {str(k): int(v) for k, v in frame[LABEL].value_counts().sort_index().items()}
    report = {
        "model": name,
        "champion": base.version.uri,
        "parent_snapshot": base.snapshot.digest,
        "family": family,
        "seed": seed,
        **change_report(reading, guard, base.snapshot.metadata.label_counts, after),
        "split": side_counts(frame),
    }
    inputs = inputs_key(content_digest(frame), family, seed)
    if not guard.accepted or inputs == last_inputs(registry, name):
        why = "no accepted corrections" if not guard.accepted else "no new accepted corrections"
        message = f"nothing to do: {why} since the last retrain from feedback ({base.version.uri} serves)"
        return _finish(Status.NOTHING_TO_DO, message, report, request)
    if request.dry_run:
        message = (
            f"dry run: would add {len(guard.added)} rows and flip {len(guard.flips)} labels; nothing written"
        )
        return _finish(Status.DRY_RUN, message, report, request)

    exclude, dropped = _carry_exclusion(base, report, say)
    audit = audit or open_audit(settings)
    already = len(audit.receipts)
    audit.ready(AuditAction.RETRAIN)  # before the snapshot and the training, not after
    snapshot = SnapshotStore(settings.snapshot_dir).derive(
        base.snapshot,
        frame,
        source=f"feedback:{base.snapshot.digest[:12]}+{iso(request.since) or 'start'}..{iso(until)}",
        redactions=reading.redactions,
        lineage={
            **_lineage(base, reading, guard, report, seed),
            **({"excluded_dropped": dropped} if dropped is not None else {}),
        },
    )
    say(
        f"snapshot {snapshot.digest[:12]} ({snapshot.metadata.rows:,} rows: +{len(guard.added)}, "
        f"{len(guard.flips)} flipped)"
    )
    note = {"kind": "feedback", "column": SPLIT_COLUMN, "parent": base.split_identity, "feedback_seed": seed}
    split = stored_split(snapshot, seed=seed, validation_fraction=base.validation_fraction)
    config = TrainingConfig(
        family=family,
        seed=seed,
        validation_fraction=base.validation_fraction,
        target_precision=settings.target_precision,
        params=base.params if family == base.family else {},
        cache_dir=settings.encoder_cache_dir,
        split=PresetSplit(split, note),
        exclude=exclude,
    )
    run, _ = train_snapshot(
        settings,
        snapshot,
        config,
        name=name,
        policy=policies.gate,
        suite=resolve_suite(Path(base.root_source), None),
        progress=progress,
        registry=registry,
        audit=audit,
    )
    version = run.version
    report.update(
        uri=version.uri,
        snapshot=snapshot.digest,
        metrics=metrics_report(run.compared_evaluation or run.evaluation, run.champion_evaluation),
        gate={"outcome": run.decision.outcome, "reason": run.decision.reason()},
    )
    registry.annotate(name, version.version, tags=_tags(base, reading, guard))
    remember(registry, name, inputs, iso(reading.last_verdict_at))
    audit.record(
        AuditAction.RETRAIN,
        version.uri,
        f"retrained from feedback on {base.snapshot.digest[:12]}: +{len(guard.added)} rows, "
        f"{len(guard.flips)} label flips; gate {run.decision.outcome}",
        _audit_payload(report, guard),
    )
    if run.decision.passed:
        report["shadow"] = to_shadow(settings, registry, audit, version, policies.rollout)
    status = Status.PASSED if run.decision.passed else Status.FAILED
    report["status"] = str(status)
    registry.annotate(
        name,
        version.version,
        documents={REPORT_JSON: _json(report), REPORT_MD: render_markdown(report)},
    )
    message = f"{version.uri}: gate {run.decision.outcome}" + (
        f"; {report['shadow']}" if "shadow" in report else ""
    )
    if dropped is not None:
        message += f"; flagged rows no longer left out ({dropped['reason']})"
    done = _finish(status, message, report, request)
    return RetrainOutcome(
        status, message, report, run, snapshot, done.report_files, tuple(audit.receipts[already:])
    )


def _carry_exclusion(
    base: Base, report: dict[str, Any], say: Progress
) -> tuple[ExcludedRows | None, dict[str, Any] | None]:
    """:func:`carried_exclusion` of the champion, said and put in the report."""
    exclude, dropped = carried_exclusion(base.lineage)
    if exclude is not None:
        report["excluded"] = exclude.note
        say(f"carry forward --exclude-flagged {exclude.note['source']} from {base.version.uri}")
    if dropped is not None:
        report["excluded_dropped"] = dropped
        say(f"the champion's --exclude-flagged is not carried forward: {dropped['reason']}")
    return exclude, dropped


def carried_exclusion(lineage: dict[str, Any]) -> tuple[ExcludedRows | None, dict[str, Any] | None]:
    """The base model's ``train --exclude-flagged``, to leave the same rows out again: loaded anew from its
    audit file when that file is still there, unchanged (same SHA-256). Otherwise no exclusion, and why it
    was dropped (recorded and printed, never silent). (None, None) when the base model excluded nothing."""
    excluded = lineage.get("excluded")
    if not isinstance(excluded, dict):
        return None, None
    source = excluded.get("source")
    dropped = {"source": source, "sha256": excluded.get("sha256")}
    if not isinstance(source, str) or not source:
        return None, {**dropped, "reason": "the champion's lineage does not name its label audit file"}
    try:
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except OSError as exc:
        return None, {**dropped, "reason": f"its label audit {source} cannot be read ({exc.strerror or exc})"}
    if digest != excluded.get("sha256"):
        return None, {**dropped, "reason": f"its label audit {source} changed since the champion was trained"}
    return load_flagged(Path(source)), None


def _read(
    settings: Settings, store: DecisionStore | None, since: datetime | None, until: datetime
) -> Reading:
    own = store is None
    if store is None:
        from deskpilot.store.sql import SqlStore

        store = SqlStore(existing_store_url(settings, "nothing was served here yet, so there is no feedback"))
    try:
        return read_verdicts(
            store, build_redactor(), since=since, until=until, max_text_length=settings.max_text_length
        )
    finally:
        if own:
            store.close()


def _finish(status: Status, message: str, report: dict[str, Any], request: RetrainRequest) -> RetrainOutcome:
    report["status"] = str(status)
    files = None
    if request.report_dir is not None:
        request.report_dir.mkdir(parents=True, exist_ok=True)
        files = (request.report_dir / REPORT_JSON, request.report_dir / REPORT_MD)
        files[0].write_text(_json(report), encoding="utf-8")
        files[1].write_text(render_markdown(report), encoding="utf-8")
    return RetrainOutcome(status, message, report, report_files=files)


def _lineage(
    base: Base, reading: Reading, guard: GuardResult, report: dict[str, Any], seed: int
) -> dict[str, Any]:
    return {
        "kind": "feedback",
        "parent_digest": base.snapshot.digest,
        "parent_model": base.version.uri,
        "parent_split": base.split_identity,
        "root_source_file": base.root_source,
        "feedback": {
            "since": iso(reading.since),
            "until": iso(reading.until),
            "verdicts": len(reading.verdicts),
            "last_verdict_at": iso(reading.last_verdict_at),
        },
        "counts": {
            "parent_rows": base.snapshot.metadata.rows,
            "added_rows": len(guard.added),
            "flipped_rows": len(guard.flips),
            "sides": report["split"],
        },
        "guard": report["guard"],
        "split": {"column": SPLIT_COLUMN, "seed": seed, "validation_fraction": base.validation_fraction},
        "evaluation": base.evaluation.record(),
    }


def _tags(base: Base, reading: Reading, guard: GuardResult) -> dict[str, str]:
    return {
        tags.FEEDBACK_PARENT: base.snapshot.digest,
        tags.FEEDBACK_SINCE: iso(reading.since) or "start",
        tags.FEEDBACK_UNTIL: iso(reading.until) or "",
        tags.FEEDBACK_ADDED: str(len(guard.added)),
        tags.FEEDBACK_FLIPPED: str(len(guard.flips)),
        tags.FEEDBACK_REJECTED: str(len(guard.rejected)),
    }


def _audit_payload(report: dict[str, Any], guard: GuardResult) -> dict[str, Any]:
    return {
        "parent_snapshot": report["parent_snapshot"],
        "snapshot": report["snapshot"],
        "since": report["feedback"]["since"],
        "until": report["feedback"]["until"],
        "verdicts": report["feedback"]["verdicts"],
        "added_rows": len(guard.added),
        "flipped_rows": len(guard.flips),
        "rejected": {reason: n["groups"] for reason, n in guard.reasons().items()},
        "tenant_shares": {s.tenant: round(s.share, 4) for s in guard.shares},
        "gate": report["gate"]["outcome"],
    }


def _json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
