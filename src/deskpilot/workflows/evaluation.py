"""Evaluate a registered version on labelled data, and gate it against the champion (recorded and audited).

The gate reads only rows neither model trained or was tuned on (ADR 0019): which rows each saw is rebuilt
from its lineage and its snapshot under this home, and the rest are left out and counted. A caller may force
the comparison onto every row; the decision then reports how many of them each model trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskpilot import tags
from deskpilot.config import Settings
from deskpilot.data.columns import classify, trimmed_labels
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.data.splits import text_keys
from deskpilot.domain import ModelRef
from deskpilot.errors import UsageError
from deskpilot.evaluation.behavioral import BehavioralSuite, GeneratedSpec, load_suite
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import ComparedRows, GateDecision, decide
from deskpilot.evaluation.report import write_report
from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import CHAMPION, ModelRegistry, ModelVersion
from deskpilot.store.audit import AuditAction
from deskpilot.training.seen import Seen, evaluation_identity, seen_by, store_lookup
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, open_audit
from deskpilot.workflows.build import build_redactor, build_registry, load_policies, parse_model_uri
from deskpilot.workflows.datasets import load_and_validate, require_valid

SUITE_FILE = "behavioral.yaml"


@dataclass(frozen=True)
class LabelledData:
    """Where the labelled rows come from and how to read them."""

    path: Path
    text_column: str = "text"
    label_column: str = "label"
    pii_patterns: list[str] | None = None
    suite: Path | None = None  # behavioral suite; default: the one beside the data, else generated


@dataclass(frozen=True)
class Scored:
    version: ModelVersion
    evaluation: Evaluation
    champion: Evaluation | None


@dataclass(frozen=True)
class EvaluationOutcome:
    scored: Scored
    report_files: tuple[Path, Path] | None

    def to_dict(self) -> dict[str, Any]:
        payload = self.scored.evaluation.to_dict()
        if self.report_files is not None:
            payload["report"] = {"html": str(self.report_files[0]), "markdown": str(self.report_files[1])}
        return payload


@dataclass(frozen=True)
class GateOutcome:
    version: ModelVersion
    decision: GateDecision
    audit: AuditReceipt | None  # None when the decision was not recorded


def resolve_suite(data: Path, suite: Path | None) -> BehavioralSuite:
    """The suite named, else the one stored beside the data, else generated perturbations only."""
    if suite is not None:
        return load_suite(suite)
    beside = data.with_name(SUITE_FILE)
    if beside.is_file():
        return load_suite(beside)
    return BehavioralSuite(source="<generated perturbations>", generated=GeneratedSpec())


def load_evaluation_data(
    settings: Settings,
    data: Path,
    *,
    text_column: str,
    label_column: str,
    pii_patterns: list[str] | None = None,
) -> EvaluationData:
    """Labelled rows (any count per label) checked, trimmed and redacted the way a snapshot stores them."""
    checked = require_valid(
        load_and_validate(settings, data, text_column=text_column, label_column=label_column, min_per_class=1)
    )
    frame = checked.table.frame
    texts, _ = build_redactor(pii_patterns).redact_many([str(t).strip() for t in frame[text_column]])
    labels = frame[label_column]
    extras = {
        str(c): frame[c].astype(str).tolist() for c in frame.columns if c not in (text_column, label_column)
    }
    return EvaluationData(
        texts=texts,
        labels=[str(label) for label in trimmed_labels(labels, classify(labels))],
        source=str(data),
        extras=extras,
    )


def evaluate_version(
    registry: ModelRegistry,
    ref: ModelRef,
    data: EvaluationData,
    suite: BehavioralSuite,
    options: EvaluationOptions,
    *,
    model: TriageModel | None = None,
) -> Evaluation:
    version = registry.get(ref)
    model = model if model is not None else registry.load(ref)
    info = {"name": version.name, "uri": version.uri, "aliases": list(version.aliases)}
    try:
        return evaluate(model, data, model_info=info, suite=suite, options=options)
    except ValueError as exc:
        raise UsageError(f"{version.uri} on {data.source}: {exc}") from exc


def _rows_of(settings: Settings, data: LabelledData) -> EvaluationData:
    """The labelled rows of ``data``, redacted as the service redacts traffic."""
    return load_evaluation_data(
        settings,
        data.path,
        text_column=data.text_column,
        label_column=data.label_column,
        pii_patterns=data.pii_patterns,
    )


def score(
    settings: Settings,
    registry: ModelRegistry,
    model_uri: str,
    data: LabelledData,
    options: EvaluationOptions,
    *,
    with_champion: bool,
) -> Scored:
    """Evaluate the model (and, when asked, the current champion) on the same redacted rows."""
    ref = parse_model_uri(model_uri)
    version = registry.get(ref)
    rows = _rows_of(settings, data)
    suite = resolve_suite(data.path, data.suite)
    evaluation = evaluate_version(registry, ref, rows, suite, options)
    champion_ref = _champion_ref(registry, ref) if with_champion else None
    champion = None
    if champion_ref is not None:
        champion = evaluate_version(registry, champion_ref, rows, suite, options)
    return Scored(version, evaluation, champion)


def evaluate_model(
    settings: Settings,
    model_uri: str,
    data: LabelledData,
    options: EvaluationOptions,
    *,
    report_dir: Path | None = None,
    compare: bool = True,
    registry: ModelRegistry | None = None,
) -> EvaluationOutcome:
    """Metrics of a registered version on labelled data; with ``report_dir``, the HTML and Markdown report
    (beside the champion's numbers when ``compare``)."""
    scored = score(
        settings,
        registry or build_registry(settings),
        model_uri,
        data,
        options,
        with_champion=compare and report_dir is not None,  # the champion only appears in the report
    )
    files = None
    if report_dir is not None:
        title = f"{model_uri} on {data.path.name}"
        files = write_report(report_dir, scored.evaluation, scored.champion, None, title=title)
    return EvaluationOutcome(scored, files)


def gate_model(
    settings: Settings,
    model_uri: str,
    data: LabelledData,
    *,
    policy_file: Path | None = None,
    seed: int = 0,
    record: bool = True,
    report_dir: Path | None = None,
    include_seen: bool = False,
    registry: ModelRegistry | None = None,
    audit: AuditRecorder | None = None,
) -> GateOutcome:
    """Apply the gate policy to a version against the champion on the rows of ``data`` neither trained on
    (every row when ``include_seen``, the leakage then reported); when ``record``, store the decision with
    the version and append it to the audit chain."""
    rules = load_policies(policy_file).gate
    registry = registry or build_registry(settings)
    if record:
        audit = audit or open_audit(settings)
        audit.ready(AuditAction.GATE)
    options = EvaluationOptions(
        n_boot=rules.bootstrap, seed=seed, per_class_min_support=rules.per_class_min_support
    )
    ref = parse_model_uri(model_uri)
    version = registry.get(ref)
    rows = _rows_of(settings, data)
    suite = resolve_suite(data.path, data.suite)
    model = registry.load(ref)
    champion_ref = _champion_ref(registry, ref)
    champion_model = registry.load(champion_ref) if champion_ref is not None else None
    rows, compared = unseen_rows(
        settings, rows, model, champion_model, include_seen=include_seen, source=data.path.name
    )
    evaluation = evaluate_version(registry, ref, rows, suite, options, model=model)
    champion = None
    if champion_ref is not None:
        champion = evaluate_version(registry, champion_ref, rows, suite, options, model=champion_model)
    decision = decide(evaluation, champion, rules, seed=seed, rows=compared)
    if decision.champion is not None and champion_model is not None:
        ours = evaluation_identity(model.manifest.lineage)
        note = {  # as ``train`` records them
            "same_evaluation_split": ours is not None
            and ours == evaluation_identity(champion_model.manifest.lineage),
            "comparison_unseen_by_both": compared.unseen_by_both,
        }
        decision = replace(decision, champion={**decision.champion, **note})
    receipt = None
    if record and audit is not None:
        record_gate(registry, version, decision)
        receipt = audit_gate(audit, version.uri, decision)
    if report_dir is not None:
        title = f"gate: {version.uri} on {data.path.name}"
        write_report(report_dir, evaluation, champion, decision, title=title)
    return GateOutcome(version, decision, receipt)


def unseen_rows(
    settings: Settings,
    data: EvaluationData,
    model: TriageModel,
    champion: TriageModel | None,
    *,
    include_seen: bool,
    source: str,
) -> tuple[EvaluationData, ComparedRows]:
    """The rows of ``data`` that neither model trained or was tuned on, and the account of them; with
    ``include_seen``, every row, and the account says how many each model saw (the leakage)."""
    lookup = store_lookup(SnapshotStore(settings.snapshot_dir))
    keys = text_keys(pd.Series(data.texts, dtype=object))
    masks: list[np.ndarray | None] = []
    notes: list[str] = []
    models = (("champion", champion), ("challenger", model))
    for who, which in models:
        seen = seen_by(which.manifest.lineage, lookup) if which is not None else Seen(frozenset(), None)
        masks.append(seen.mask(keys))
        if seen.keys is None:
            notes.append(f"the {who}'s training rows are unknown ({seen.why_unknown})")
    either = np.zeros(len(keys), dtype=bool)
    for mask in masks:
        if mask is not None:
            either |= mask
    counts = [int(mask.sum()) if mask is not None else None for mask in masks]
    keep = np.ones(len(keys), dtype=bool) if include_seen else ~either
    if not keep.any():
        raise UsageError(
            f"every row of {source} was trained on by the model or the champion, so none is left that "
            "neither saw: gate on held-out data, or pass --include-seen-rows to compare anyway (the "
            "leakage is reported)",
            details={"rows": len(keys), "champion_seen": counts[0], "challenger_seen": counts[1]},
        )
    account = ComparedRows(
        offered=len(keys),
        compared=int(keep.sum()),
        champion_seen=counts[0],
        challenger_seen=counts[1],
        forced=include_seen,
        source=source,
        notes=tuple(notes),
    )
    return (data if keep.all() else _subset(data, keep)), account


def _subset(data: EvaluationData, keep: np.ndarray) -> EvaluationData:
    index = np.flatnonzero(keep)
    return EvaluationData(
        texts=[data.texts[i] for i in index],
        labels=[data.labels[i] for i in index],
        source=data.source,
        extras={name: [values[i] for i in index] for name, values in data.extras.items()},
    )


def record_gate(registry: ModelRegistry, version: ModelVersion, decision: GateDecision) -> None:
    """Keep the decision with the version: its tags and a timestamped JSON document."""
    stamp = decision.decided_at.replace(":", "").replace("-", "")
    registry.annotate(
        version.name,
        version.version,
        tags={**decision.tags(), tags.GATE_AT: decision.decided_at},
        documents={f"gate_decision-{stamp}.json": json.dumps(decision.to_dict(), indent=2, default=str)},
    )


def audit_gate(audit: AuditRecorder, uri: str, decision: GateDecision) -> AuditReceipt:
    """Gate decisions belong in the audit chain beside the promotions they allow."""
    payload = {
        "outcome": decision.outcome,
        "policy": decision.policy,
        "champion": (decision.champion or {}).get("uri"),
        "failed_rules": [f"{r.kind} {r.metric}" for r in decision.failures],
        "compared_rows": decision.compared_rows,
    }
    if decision.rows is not None:
        rows = decision.rows
        payload["rows"] = {
            "offered": rows.offered,
            "compared": rows.compared,
            "left_out": rows.left_out,
            "champion_seen": rows.champion_seen,
            "challenger_seen": rows.challenger_seen,
            "forced": rows.forced,
        }
    return audit.record(AuditAction.GATE, uri, decision.reason()[:500], payload)


def _champion_ref(registry: ModelRegistry, ref: ModelRef) -> ModelRef | None:
    """The champion to compare against, unless there is none or it is the model itself."""
    champion = registry.alias_version(ref.name, CHAMPION)
    if champion is None or champion == registry.get(ref).version:
        return None
    return ModelRef(ref.name, version=champion)
