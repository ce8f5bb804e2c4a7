"""Rollout by hand: promote, roll back, read the status with its recent events, build the shadow report.

Every change is checked and written by :mod:`deskpilot.rollout.actions` and audited through the
:class:`~deskpilot.workflows.audit.AuditRecorder` (checked before the change, appended after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import DeskPilotError, NoShadowDataError, StoreError
from deskpilot.registry.base import ModelRegistry
from deskpilot.rollout import actions
from deskpilot.rollout.render import write_report
from deskpilot.rollout.report import MIN_COUNT, ShadowReport, build_report
from deskpilot.rollout.state import RolloutState, Stage
from deskpilot.store.audit import PROMOTIONS, AuditAction, AuditEntry
from deskpilot.workflows.audit import AuditRecorder, open_audit, open_audit_for_reading
from deskpilot.workflows.build import build_registry, existing_store_url, parse_model_uri


@dataclass(frozen=True)
class RolloutView:
    """The rollout of one registered model, with URIs instead of bare version numbers."""

    model: str
    state: RolloutState

    def uri(self, version: str | None) -> str | None:
        return None if version is None else ModelRef(self.model, version=version).uri

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "champion": self.uri(state.champion),
            "challenger": self.uri(state.challenger),
            "stage": str(state.stage),
            "percent": state.percent,
            "previous_champions": [self.uri(v) for v in state.history],
            "revision": state.revision,
            "updated_at": state.updated_at,
            "updated_by": state.updated_by,
            "reason": state.reason,
        }


@dataclass(frozen=True)
class RolloutStatus:
    view: RolloutView
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class ShadowReportOutcome:
    report: ShadowReport
    files: tuple[Path, Path] | None


def promote(
    settings: Settings,
    model_uri: str,
    *,
    to: str,
    percent: float | None = None,
    force: bool = False,
    reason: str = "",
    registry: ModelRegistry | None = None,
    audit: AuditRecorder | None = None,
) -> RolloutView:
    """Put a gated version in shadow, in canary at ``percent``, or make it the champion."""
    ref = parse_model_uri(model_uri)
    registry = registry or build_registry(settings)
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.PROMOTE)
    new = actions.promote(
        registry,
        audit,
        ref,
        to=to,
        percent=percent,
        actor=audit.actor,
        reason=reason or f"promoted to {to}",
        force=force,
    )
    return RolloutView(ref.name, new)


def rollback(
    settings: Settings,
    *,
    model: str | None = None,
    reason: str = "rolled back by hand",
    registry: ModelRegistry | None = None,
    audit: AuditRecorder | None = None,
) -> RolloutView:
    """One step back: stop the challenger, or (with none) return to the previous champion."""
    name = model or settings.model_name
    registry = registry or build_registry(settings)
    audit = audit or open_audit(settings)
    audit.ready(AuditAction.ROLLBACK)
    new = actions.rollback(registry, audit, name, actor=audit.actor, reason=reason)
    return RolloutView(name, new)


def status(
    settings: Settings, *, model: str | None = None, registry: ModelRegistry | None = None, events: int = 10
) -> RolloutStatus:
    """The champion, the challenger and its stage, earlier champions, and the model's last audit events."""
    name = model or settings.model_name
    current = actions.read_state(registry or build_registry(settings), name)
    return RolloutStatus(RolloutView(name, current), _recent_events(settings, name, events))


def shadow_report(
    settings: Settings,
    *,
    model: str | None = None,
    version: str | None = None,
    since: datetime | None = None,
    out: Path | None = None,
    min_count: int = MIN_COUNT,
) -> ShadowReportOutcome:
    """Shadow agreement of a challenger with the champion on the same requests, from the shadow log."""
    from deskpilot.store.sql import SqlStore

    name = model or settings.model_name
    challenger = version or _last_challenger(settings, name)
    store = SqlStore(existing_store_url(settings, "nothing was served here yet"))
    try:
        pairs = store.shadow_comparison(name, challenger, since)
    finally:
        store.close()
    target = ModelRef(name, version=challenger).uri
    if not pairs:
        when = f" since {since.isoformat()}" if since is not None else ""
        raise NoShadowDataError(
            f"nothing to report: no shadow answers of {target}{when} next to a logged champion decision; "
            f"put it in shadow (`deskpilot promote {target} --to shadow`) and serve traffic",
            details={"model": target, "since": None if since is None else since.isoformat()},
        )
    report = build_report(
        pairs, model_name=name, challenger_version=challenger, since=since, min_count=min_count
    )
    files = write_report(out, report) if out is not None else None
    return ShadowReportOutcome(report, files)


def _audit_entries(settings: Settings) -> list[AuditEntry]:
    """Every audit entry, or none when there is no store yet (nothing was promoted through rollout)."""
    try:
        log = open_audit_for_reading(settings)
        try:
            return log.entries()
        finally:
            log.close()
    except StoreError:
        return []


def _last_challenger(settings: Settings, model: str) -> str:
    """The current challenger; else the version last promoted to shadow or canary, from the audit log."""
    try:
        current = actions.read_state(build_registry(settings), model).challenger
    except DeskPilotError:
        current = None  # no registry here: the audit log (in the store) may still know
    if current is not None:
        return current
    prefix = f"models:/{model}/"
    for entry in reversed(_audit_entries(settings)):
        staged = entry.payload.get("to") in (Stage.SHADOW, Stage.CANARY)
        if entry.action in PROMOTIONS and staged and entry.target.startswith(prefix):
            return entry.target.removeprefix(prefix)
    raise NoShadowDataError(
        f"nothing to report: {model} has no challenger and the audit log records none; pass --version",
        details={"model": model},
    )


def _recent_events(settings: Settings, model: str, limit: int) -> list[dict[str, Any]]:
    prefix = f"models:/{model}/"
    mine = [e for e in _audit_entries(settings) if e.target.startswith(prefix)]
    return [
        {
            "seq": e.seq,
            "at": e.at.isoformat(timespec="seconds"),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "reason": e.reason,
        }
        for e in mine[-limit:]
    ]
