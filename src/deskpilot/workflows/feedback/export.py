"""``deskpilot feedback export``: the verdicts of a range as a labelled dataset that meets the data contract.

One row per normalized text, so the file never holds the same text twice (the contract's
``conflicting_duplicate`` rule), with the verdicts that agree counted once: ``count`` and the ``tenants`` who
gave them. When verdicts on a text disagree the label with most tenants (then most verdicts) wins and the row
is flagged ``conflict`` with the ``dissent``; a tie is left out. "No intent fits" verdicts never become rows.
Both are listed in the summary written beside the file (``NAME.report.json``), which the command prints.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from deskpilot.config import Settings
from deskpilot.data.io import detect_format, write_table_atomic
from deskpilot.errors import DeskPilotError, EmptyDatasetError
from deskpilot.store.base import OTHER_INTENT, DecisionStore
from deskpilot.workflows.build import build_redactor, existing_store_url
from deskpilot.workflows.datasets import load_and_validate
from deskpilot.workflows.feedback.verdicts import (
    Reading,
    VerdictGroup,
    check_range,
    check_tenant,
    iso,
    read_verdicts,
    utc_now,
)

COLUMNS = (
    "text",
    "label",
    "predicted_intent",
    "confidence",
    "route",
    "reviewer_kind",
    "tenant",
    "decided_at",
    "verdict_at",
    "model_name",
    "model_version",
    "count",
    "tenants",
    "corrected",
    "conflict",
    "dissent",
)
MAX_LISTED = 100


@dataclass(frozen=True)
class ExportRequest:
    output: Path
    since: datetime | None = None  # verdicts given at or after
    until: datetime | None = None  # ...and before; default: now
    tenant: str | None = None


@dataclass(frozen=True)
class ExportOutcome:
    output: Path
    summary_file: Path
    summary: dict[str, Any]


def export_feedback(
    settings: Settings, request: ExportRequest, *, store: DecisionStore | None = None
) -> ExportOutcome:
    """Write the range's verdicts to ``request.output`` (CSV, TSV, JSONL or Parquet by extension)."""
    detect_format(request.output)  # an unknown extension fails before the store is read
    until = request.until or utc_now()
    check_range(request.since, until)
    own = store is None
    if store is None:
        from deskpilot.store.sql import SqlStore

        store = SqlStore(existing_store_url(settings, "nothing was served here yet, so there is no feedback"))
    try:
        check_tenant(settings, store, request.tenant)
        reading = read_verdicts(
            store,
            build_redactor(),
            since=request.since,
            until=until,
            tenant=request.tenant,
            max_text_length=settings.max_text_length,
        )
    finally:
        if own:
            store.close()
    frame, summary = export_frame(reading)
    write_table_atomic(frame, request.output)
    summary["file"] = str(request.output)
    summary["contract"] = _contract(settings, request.output)
    summary_file = request.output.with_name(f"{request.output.stem}.report.json")
    summary_file.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportOutcome(request.output, summary_file, summary)


def export_frame(reading: Reading) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows to write and the summary of what was merged, flagged and left out."""
    scope = f" of tenant {reading.tenant}" if reading.tenant else ""
    since = iso(reading.since) or "the start"
    if not reading.verdicts:
        raise EmptyDatasetError(
            f"no feedback{scope} was given between {since} and {iso(reading.until)}: nothing to export",
            details={"since": iso(reading.since), "until": iso(reading.until), "tenant": reading.tenant},
        )
    rows: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for groups in reading.by_text().values():
        winner = _winner(groups)
        if len(groups) > 1:
            conflicts.append(
                {
                    "text": groups[0].latest.text,
                    "label": None if winner is None else winner.label,
                    "verdicts": [g.describe() for g in groups],
                }
            )
        if winner is None:
            left_out["unresolved_conflict"] += 1
        elif winner.other:
            left_out["other_intent"] += 1
        else:
            rows.append(_row(winner, [g for g in groups if g is not winner]))
    other = [v for v in reading.verdicts if v.label == OTHER_INTENT]
    summary = {
        "since": iso(reading.since),
        "until": iso(reading.until),
        "tenant": reading.tenant,
        **reading.counts(),
        "rows": len(rows),
        "texts": len(rows) + sum(left_out.values()),
        "duplicates_merged": sum(row["count"] - 1 for row in rows),
        "texts_left_out": dict(sorted(left_out.items())),
        "other_intent_verdicts": {
            "verdicts": len(other),
            "by_tenant": dict(sorted(Counter(v.tenant for v in other).items())),
            "by_predicted_intent": dict(sorted(Counter(v.predicted for v in other).items())),
        },
        "conflicts": len(conflicts),
        "conflict_list": conflicts[:MAX_LISTED],
    }
    if not rows:
        raise EmptyDatasetError(
            f"{len(reading.verdicts)} verdict(s){scope} since {since}, but none gives a label to train on "
            f"({dict(left_out)}): nothing to export",
            details={"left_out": dict(left_out)},
        )
    return pd.DataFrame(rows, columns=list(COLUMNS)), summary


def _winner(groups: list[VerdictGroup]) -> VerdictGroup | None:
    """The label with most tenants, then most verdicts; None on a tie."""
    ranked = sorted(groups, key=lambda g: (len(g.tenants), g.count), reverse=True)
    if len(ranked) > 1 and (len(ranked[0].tenants), ranked[0].count) == (
        len(ranked[1].tenants),
        ranked[1].count,
    ):
        return None
    return ranked[0]


def _row(group: VerdictGroup, dissent: list[VerdictGroup]) -> dict[str, Any]:
    latest = group.latest
    return {
        "text": latest.text,
        "label": group.label,
        "predicted_intent": latest.predicted,
        "confidence": round(latest.confidence, 6),
        "route": latest.route,
        "reviewer_kind": latest.reviewer,
        "tenant": latest.tenant,
        "decided_at": iso(latest.decided_at),
        "verdict_at": iso(latest.verdict_at),
        "model_name": latest.model_name,
        "model_version": latest.model_version,
        "count": group.count,
        "tenants": ";".join(group.tenants),
        "corrected": latest.corrected,
        "conflict": bool(dissent),
        "dissent": "; ".join(f"{g.label} x{g.count} ({','.join(g.tenants)})" for g in dissent),
    }


def _contract(settings: Settings, output: Path) -> dict[str, Any]:
    """Whether the written file meets the data contract as ``deskpilot validate`` checks it."""
    try:
        report = load_and_validate(settings, output, text_column="text", label_column="label").report
    except DeskPilotError as error:  # pragma: no cover - the file was just written by us
        return {"ok": False, "error": error.message}
    return {"ok": report.ok, "failed_rules": [r.rule for r in report.errors]}
