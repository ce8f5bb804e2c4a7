"""What a retrain from feedback changes, as JSON and Markdown: the rows the guard accepted and rejected (by
reason), the intents they add to, the class balance before and after, the labels they flip, each tenant's
share, and both models' metrics on the comparison rows. Operators read it before trusting the new version.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from deskpilot.evaluation.evaluate import Evaluation
from deskpilot.workflows.feedback.derive import ORIGIN_COLUMN
from deskpilot.workflows.feedback.guard import GuardResult
from deskpilot.workflows.feedback.verdicts import Reading, iso

HEADLINE = ("accuracy", "macro_f1", "auto_coverage", "auto_precision", "ece")
MAX_LISTED = 50
SHIFT_WARNING_PP = 5.0  # a class whose share moves this much deserves a look even when every rule held


def change_report(
    reading: Reading, guard: GuardResult, before: dict[str, int], after: dict[str, int] | None
) -> dict[str, Any]:
    """The part known before training: feedback read, guard decisions, and what they do to the data."""
    added = Counter(change.label for change in guard.added)
    balance = class_balance(before, after or before)
    return {
        "feedback": {"since": iso(reading.since), "until": iso(reading.until), **reading.counts()},
        "guard": {
            "options": guard.options.to_dict(),
            "accepted": len(guard.accepted),
            "added_rows": len(guard.added),
            "flipped_rows": len(guard.flips),
            "rejected": guard.reasons(),
        },
        "intents_added": dict(sorted(added.items())),
        "flips": [
            {"text": c.text, "from": list(c.previous), "to": c.label, "tenants": list(c.tenants)}
            for c in guard.flips[:MAX_LISTED]
        ],
        "rejected_examples": [
            {"text": r.group.latest.text, "label": r.group.label, "reason": str(r.reason), "detail": r.detail}
            for r in guard.rejected[:MAX_LISTED]
        ],
        "tenants": [
            {
                "tenant": s.tenant,
                "verdicts": s.verdicts,
                "accepted": round(s.accepted, 3),
                "share": round(s.share, 4),
                "dropped_by_cap": s.dropped,
            }
            for s in guard.shares
        ],
        "class_balance": balance,
        "warnings": [
            f"{row['label']} moves from {row['before_share']:.1%} to {row['after_share']:.1%} of the rows "
            f"({row['shift_pp']:+.1f} pp)"
            for row in balance["labels"]
            if abs(row["shift_pp"]) >= SHIFT_WARNING_PP
        ],
    }


def class_balance(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """Per label: rows and share before and after, the shift in percentage points, and the total variation
    distance between the two distributions (half the sum of absolute share changes)."""
    n0, n1 = sum(before.values()) or 1, sum(after.values()) or 1
    labels = sorted(set(before) | set(after))
    shifts = {label: after.get(label, 0) / n1 - before.get(label, 0) / n0 for label in labels}
    rows = [
        {
            "label": label,
            "before": before.get(label, 0),
            "after": after.get(label, 0),
            "before_share": round(before.get(label, 0) / n0, 4),
            "after_share": round(after.get(label, 0) / n1, 4),
            "shift_pp": round(100 * shifts[label], 2),
        }
        for label in labels
    ]
    distance = sum(abs(shift) for shift in shifts.values()) / 2
    return {"labels": rows, "total_variation": round(distance, 4)}


def metrics_report(challenger: Evaluation, champion: Evaluation | None) -> dict[str, Any]:
    """Both models on the comparison rows (rows neither trained on), overall and per row origin."""

    def headline(evaluation: Evaluation) -> dict[str, float | None]:
        return {name: evaluation.measured(name) for name in HEADLINE}

    def by_origin(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
        return {
            s.value: {"rows": s.n, "accuracy": s.accuracy, "auto_coverage": s.auto_coverage}
            for s in evaluation.slices
            if s.column == ORIGIN_COLUMN
        }

    return {
        "rows": int(challenger.rows.truth.size),
        "before": None if champion is None else {**headline(champion), "by_origin": by_origin(champion)},
        "after": {**headline(challenger), "by_origin": by_origin(challenger)},
    }


def render_markdown(report: dict[str, Any]) -> str:
    """The report for people: the same content as the JSON, as a few short tables."""
    feedback, guard = report["feedback"], report["guard"]
    lines = [
        f"# Retrain from feedback: {report.get('uri') or report['status']}",
        "",
        f"- champion {report['champion']} on snapshot `{report['parent_snapshot'][:12]}`"
        + (f" → new snapshot `{report['snapshot'][:12]}`" if report.get("snapshot") else ""),
        f"- verdicts given {feedback['since'] or 'from the start'} … {feedback['until']}: "
        f"{feedback['verdicts']} ({feedback['corrections']} corrections, {feedback['other_intent']} "
        "'no intent fits')",
        f"- accepted {guard['accepted']} ({guard['added_rows']} new rows, {guard['flipped_rows']} label "
        f"flips); guard: {_options(guard['options'])}",
    ]
    if report.get("gate"):
        lines.append(f"- gate **{report['gate']['outcome']}**: {report['gate']['reason']}")
    if report.get("shadow"):
        lines.append(f"- rollout: {report['shadow']}")
    lines += [f"- **warning**: {warning}" for warning in report.get("warnings", [])]
    lines += ["", "## Rejected, by reason", "", "| reason | texts | verdicts |", "|---|---:|---:|"]
    lines += [f"| {r} | {n['groups']} | {n['verdicts']} |" for r, n in guard["rejected"].items()] or [
        "| - | 0 | 0 |"
    ]
    lines += [
        "",
        "## Tenants",
        "",
        "| tenant | verdicts | accepted | share | dropped by cap |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {t['tenant']} | {t['verdicts']} | {t['accepted']:g} | {t['share']:.1%} | {t['dropped_by_cap']} |"
        for t in report["tenants"]
    ]
    balance = report["class_balance"]
    lines += [
        "",
        f"## Class balance (total variation {balance['total_variation']:.4f})",
        "",
        "| label | added | before | after | shift (pp) |",
        "|---|---:|---:|---:|---:|",
    ]
    added = report["intents_added"]
    lines += [
        f"| {r['label']} | {added.get(r['label'], 0)} | {r['before']} ({r['before_share']:.1%}) | "
        f"{r['after']} ({r['after_share']:.1%}) | {r['shift_pp']:+.2f} |"
        for r in balance["labels"]
        if r["before"] != r["after"] or added.get(r["label"])
    ]
    if report["flips"]:
        lines += ["", "## Label flips", "", "| text | from | to | tenants |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(f['text'])} | {', '.join(f['from'])} | {f['to']} | {', '.join(f['tenants'])} |"
            for f in report["flips"]
        ]
    lines += _metric_lines(report.get("metrics"))
    return "\n".join(lines) + "\n"


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return []
    before, after = metrics["before"] or {}, metrics["after"]
    lines = [
        "",
        f"## Evaluation metrics on {metrics['rows']:,} rows of the frozen evaluation split, "
        "which neither model trained on",
        "",
        "| metric | champion (before) | new version (after) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {_num(before.get(name))} | {_num(after.get(name))} |" for name in HEADLINE]
    for origin, scores in sorted(after["by_origin"].items()):
        old = before.get("by_origin", {}).get(origin, {})
        lines.append(
            f"| accuracy on {origin} rows (n={scores['rows']}) | {_num(old.get('accuracy'))} | "
            f"{_num(scores['accuracy'])} |"
        )
    return lines


def _options(options: dict[str, Any]) -> str:
    cap = options["max_per_intent"]
    return (
        f"max tenant share {options['max_tenant_share']:.0%}, min agreement {options['min_agreement']} "
        f"tenants, per-intent cap {cap if cap is not None else 'none'}"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _cell(text: str) -> str:
    short = text if len(text) <= 80 else text[:77] + "…"
    return short.replace("|", "\\|").replace("\n", " ")
