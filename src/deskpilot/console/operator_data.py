"""What the operator pages show, read from the registry, the rollout state, the shadow log and the stored
monitor runs; plain values for the templates, no web framework here.

Every function is blocking (registry and database reads): the routes call them through a thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from deskpilot import tags
from deskpilot.config import Settings
from deskpilot.console.operator_markdown import render_markdown
from deskpilot.domain import ModelRef
from deskpilot.errors import DeskPilotError, ModelNotFoundError, NoShadowDataError
from deskpilot.monitoring.history import HistoryPoint, stored_history
from deskpilot.registry.base import MODEL_CARD, REPORT_MD, ModelRegistry, ModelVersion
from deskpilot.rollout.render import headline_lines
from deskpilot.rollout.report import ShadowReport
from deskpilot.store.base import DecisionStore
from deskpilot.workflows import rollout

HEADLINE_METRICS = ("val_accuracy", "val_macro_f1", "val_auto_coverage")
MONITOR_RUNS = 500  # stored windows read back for the history (the CLI report reads as many)
ALERTS_SHOWN = 50
ROLLOUT_EVENTS = 20
LINEAGE_TAGS = (
    ("Dataset snapshot", tags.DATASET_DIGEST),
    ("Source file", tags.SOURCE_FILE),
    ("Seed", tags.SEED),
    ("Routing threshold", tags.THRESHOLD),
    ("Target precision", tags.TARGET_PRECISION),
    ("DeskPilot release", tags.VERSION),
    ("Code commit", tags.GIT_COMMIT),
    ("Retrained from feedback of", tags.FEEDBACK_PARENT),
)


@dataclass(frozen=True)
class ModelRow:
    """One registered version as the models table shows it."""

    version: ModelVersion

    @property
    def gate(self) -> str | None:
        return self.version.tags.get(tags.GATE)

    @property
    def gate_reason(self) -> str:
        return self.version.tags.get(tags.GATE_REASON, "")

    def metric(self, name: str) -> float | None:
        value = self.version.metrics.get(name)
        return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ModelDetail:
    row: ModelRow
    metrics: list[tuple[str, float]]
    lineage: list[tuple[str, str]]
    gate: list[tuple[str, str]]
    card: Markup | None
    report: Markup | None


def model_rows(registry: ModelRegistry, name: str) -> list[ModelRow]:
    """Every registered version of ``name``, newest first."""
    return [ModelRow(version) for version in registry.versions(name)]


def model_detail(registry: ModelRegistry, name: str, version: str) -> ModelDetail:
    """One version with its metrics, lineage, gate decision, model card and evaluation report."""
    if not (version.isascii() and version.isdecimal()):
        raise ModelNotFoundError(f"no version {version!r} of {name}: versions are numbers")
    found = registry.get(ModelRef(name, version=version))
    card = registry.document(name, found.version, MODEL_CARD)
    report = registry.document(name, found.version, REPORT_MD)
    lineage = [(label, found.tags[key]) for label, key in LINEAGE_TAGS if found.tags.get(key)]
    gate = [
        (label, found.tags[key])
        for label, key in (
            ("Outcome", tags.GATE),
            ("Compared with", tags.GATE_CHAMPION),
            ("Reason", tags.GATE_REASON),
            ("Policy", tags.GATE_POLICY),
            ("Decided", tags.GATE_AT),
        )
        if found.tags.get(key)
    ]
    return ModelDetail(
        row=ModelRow(found),
        metrics=sorted((k, v) for k, v in found.metrics.items() if math.isfinite(v)),
        lineage=lineage,
        gate=gate,
        card=None if card is None else render_markdown(card, name="the model card"),
        report=None if report is None else render_markdown(report, name="the evaluation report"),
    )


@dataclass(frozen=True)
class ShadowView:
    """The shadow report of the challenger (or the last one), or why there is none yet."""

    report: ShadowReport | None
    lines: list[str]
    message: str = ""


def rollout_status(settings: Settings, registry: ModelRegistry) -> rollout.RolloutStatus:
    return rollout.status(settings, registry=registry, events=ROLLOUT_EVENTS)


def shadow_view(settings: Settings, challenger: str | None) -> ShadowView:
    """The report ``deskpilot rollout report`` prints; a missing log or comparison is a message, not an
    error (a fresh install has none)."""
    try:
        outcome = rollout.shadow_report(settings, version=challenger)
    except NoShadowDataError:
        return ShadowView(None, [], "No shadow data yet: put a version in shadow and serve traffic.")
    except DeskPilotError as error:
        return ShadowView(None, [], f"No shadow report: {error.message}")
    return ShadowView(outcome.report, headline_lines(outcome.report))


@dataclass(frozen=True)
class SignalRow:
    """One signal of one stored window, as the tables show it."""

    name: str
    statistic: float | None
    q_value: float | None
    fired: bool
    skipped: str | None
    n_window: int | None


@dataclass(frozen=True)
class Alert:
    end: datetime
    tenant: str | None
    model_version: str
    signal: SignalRow


@dataclass(frozen=True)
class MonitoringView:
    """The stored monitor runs: all-tenant history for the charts, the latest window's signals, and
    every fired signal (any tenant), newest first."""

    points: list[HistoryPoint]
    alpha: float | None
    latest: list[SignalRow]
    latest_end: datetime | None
    latest_version: str
    alerts: list[Alert]
    windows: int


def monitoring_view(store: DecisionStore, model_name: str, *, limit: int = MONITOR_RUNS) -> MonitoringView:
    overall = store.monitor_runs(limit, model_name=model_name, overall=True)
    fired = store.monitor_runs(ALERTS_SHOWN, model_name=model_name, fired=True)  # of any tenant
    last = overall[-1] if overall else None
    alerts = [
        Alert(record.until, record.tenant, record.model_version, signal)
        for record in reversed(fired)
        for signal in signal_rows(record.result)
        if signal.fired
    ]
    return MonitoringView(
        points=stored_history(overall, model_name),
        alpha=_number(last.result.get("alpha")) if last is not None else None,
        latest=signal_rows(last.result) if last is not None else [],
        latest_end=last.until if last is not None else None,
        latest_version="" if last is None else last.model_version,
        alerts=alerts[:ALERTS_SHOWN],
        windows=len(overall),
    )


def signal_rows(result: Mapping[str, Any]) -> list[SignalRow]:
    """The signals of one stored window; rows another version wrote with fewer keys read as missing."""
    raw = result.get("signals")
    rows = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        n = item.get("n_window")
        rows.append(
            SignalRow(
                name=str(item["name"]),
                statistic=_number(item.get("statistic")),
                q_value=_number(item.get("q_value")),
                fired=item.get("fired") is True,
                skipped=str(item["skipped"]) if item.get("skipped") else None,
                n_window=n if isinstance(n, int) and not isinstance(n, bool) else None,
            )
        )
    return rows


def reference_accuracy(registry: ModelRegistry, name: str, version: str) -> float | None:
    """The validation accuracy of the watched version: what the monitored accuracy is read against."""
    if not version:
        return None
    try:
        found = registry.get(ModelRef(name, version=version))
    except DeskPilotError:
        return None
    return _number(found.metrics.get("val_accuracy"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
