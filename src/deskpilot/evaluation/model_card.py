"""The model card: what a registered version is for, what it was trained on, how good it is, where it fails.

Generated for every registered version from its lineage, its evaluation on its lineage's frozen evaluation
split (ADR 0019) and its gate decision,
and stored with the version, so a reviewer never has to reconstruct any of it from run logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deskpilot.evaluation.evaluate import Evaluation
from deskpilot.evaluation.gate import GateDecision

WEAK_CLASSES = 8


def render_model_card(
    *,
    title: str,
    evaluation: Evaluation,
    lineage: Mapping[str, Any],
    label_counts: Mapping[str, int],
    decision: GateDecision | None,
) -> str:
    """Markdown for one model version; every number comes from the arguments."""
    model = evaluation.model
    lines = [f"# Model card: {title}", ""]
    lines += _intended_use(model)
    lines += _data(lineage, label_counts)
    lines += _training(model, lineage)
    lines += _metrics(evaluation)
    lines += _routing(evaluation)
    lines += _weaknesses(evaluation)
    lines += _behavioral(evaluation)
    lines += _limitations(evaluation)
    lines += _gate(decision)
    return "\n".join(lines).rstrip() + "\n"


def _intended_use(model: Mapping[str, Any]) -> list[str]:
    return [
        "## Intended use",
        "",
        f"Sorts customer-support messages into one of {model.get('classes', '?')} intents (queues) and says "
        "whether a message can be routed without a person (`auto`) or needs one (`human`). It is meant to "
        "speed up triage, not to answer customers: every `human` route, and a sample of `auto` routes, "
        "should be seen by an agent. Messages are PII-redacted before they reach the model.",
        "",
    ]


def _data(lineage: Mapping[str, Any], label_counts: Mapping[str, int]) -> list[str]:
    counts = sorted(label_counts.items(), key=lambda item: (-item[1], item[0]))
    values = [n for _, n in counts]
    out = [
        "## Data",
        "",
        f"- Snapshot digest: `{lineage.get('dataset_digest', 'unknown')}`",
        f"- Source file: `{lineage.get('source_file', 'unknown')}`",
        f"- Rows: {sum(values):,} in {len(values)} labels; split seed {lineage.get('seed')}: "
        f"{lineage.get('train_rows', '?'):,} training, {lineage.get('validation_rows', '?'):,} validation, "
        f"{lineage.get('evaluation_rows', 0):,} in the lineage's frozen evaluation split "
        "(stratified, near-duplicates kept on one side)",
    ]
    if values:
        median = sorted(values)[len(values) // 2]
        out.append(f"- Examples per label: min {values[-1]}, median {median}, max {values[0]}")
        rare = ", ".join(f"`{label}` ({n})" for label, n in counts[-5:][::-1])
        out.append(f"- Rarest labels: {rare}")
    return [*out, ""]


def _training(model: Mapping[str, Any], lineage: Mapping[str, Any]) -> list[str]:
    params = lineage.get("params", {})
    shown = ", ".join(f"`{k}={v}`" for k, v in sorted(params.items()) if not isinstance(v, list | dict))
    return [
        "## Training",
        "",
        f"- Family: `{model.get('family')}`; hyperparameters: {shown or 'defaults'}",
        "- Probabilities calibrated on the validation split (temperature scaling); routing threshold picked "
        "there too",
        f"- Code: `{lineage.get('code_version', 'see run tags')}`",
        "",
    ]


def _metrics(evaluation: Evaluation) -> list[str]:
    level = evaluation.data.get("interval_level", 0.95)
    out = [
        "## Evaluation metrics",
        "",
        f"{evaluation.data['scored_rows']:,} messages of the frozen evaluation split, which no version of "
        f"this lineage trains on; {level:.0%} bootstrap intervals "
        f"({evaluation.data['bootstrap']} resamples).",
        "",
        "| metric | value | interval |",
        "|---|---|---|",
    ]
    for name, interval in evaluation.headline.items():
        out.append(f"| {name} | {interval.value:.4f} | {interval.low:.4f} – {interval.high:.4f} |")
    cost = evaluation.cost
    out += [
        "",
        f"Latency on the machine that trained it: p50 {cost.latency_p50_ms:.1f} ms, p99 "
        f"{cost.latency_p99_ms:.1f} ms per single message; "
        f"{cost.throughput_per_s:,.0f} messages/s in batches; "
        f"{cost.cpu_ms_per_message:.2f} CPU-ms per message (≈ ${cost.cost_per_1k:.5f} per 1,000 at "
        f"${cost.cpu_hour_price}/CPU-hour).",
        "",
    ]
    return out


def _routing(evaluation: Evaluation) -> list[str]:
    model = evaluation.model
    threshold = model.get("threshold")
    target = model.get("target_precision")
    coverage = evaluation.headline["auto_coverage"].value
    precision = evaluation.headline["auto_precision"].value
    if threshold is None:
        meaning = (
            f"No confidence threshold reached {target} precision on validation, so every message is routed "
            "`human`."
        )
    else:
        meaning = (
            f"Messages whose top confidence is at least **{threshold:.4f}** are routed `auto`; that was the "
            "lowest threshold keeping the precision of auto-routed messages at or above "
            f"{target} on validation. "
            f"On validation it routed {coverage:.1%} of messages automatically at {precision:.2%} precision; "
            "the rest go to a person."
        )
    return ["## Routing threshold", "", meaning, ""]


def _weaknesses(evaluation: Evaluation) -> list[str]:
    out = [
        "## Known weak intents and slices",
        "",
        "| intent | F1 | precision | recall | support |",
        "|---|---|---|---|---|",
    ]
    for row in evaluation.per_class[:WEAK_CLASSES]:
        out.append(
            f"| `{row.label}` | {row.f1:.3f} | {row.precision:.3f} | {row.recall:.3f} | {row.support} |"
        )
    if evaluation.top_confusions:
        out += ["", "Most frequent confusions (true → predicted):", ""]
        out += [
            f"- `{c.truth}` → `{c.predicted}`: {c.count} ({c.share_of_truth:.0%} of `{c.truth}`)"
            for c in evaluation.top_confusions[:5]
        ]
    if evaluation.worst_slices:
        out += ["", "Weakest slices:", ""]
        out += [
            f"- {s.column} = {s.value}: accuracy {s.accuracy:.3f} on {s.n} messages"
            for s in evaluation.worst_slices
        ]
    return [*out, ""]


def _behavioral(evaluation: Evaluation) -> list[str]:
    result = evaluation.behavioral
    if result is None:
        return ["## Behavioral tests", "", "Not run for this version.", ""]
    rates = ", ".join(f"{kind}: {rate:.1%}" for kind, rate in sorted(result.pass_rates.items()))
    out = ["## Behavioral tests", "", f"Pass rates by type: {rates or 'nothing evaluated'}.", ""]
    for test in result.tests:
        if test.failed:
            out.append(f"- {test.type} '{test.name}': {test.passed}/{test.total - test.skipped} passed")
    return [*out, ""]


def _limitations(evaluation: Evaluation) -> list[str]:
    unseen = evaluation.unseen_labels
    return [
        "## Limitations",
        "",
        "- It knows only the intents it was trained on. A message about anything else still gets one of "
        "them, usually with low confidence, which the threshold sends to a person; it is not an "
        "out-of-scope detector.",
        "- Metrics come from a held-out split of the same data: they describe data like the training "
        "data. Watch drift and feedback accuracy in production.",
        "- Confidence is calibrated on validation; calibration can degrade when the traffic mix changes.",
        f"- Evaluation rows with labels it never saw: {unseen['rows']}.",
        "",
    ]


def _gate(decision: GateDecision | None) -> list[str]:
    if decision is None:
        return ["## Gate decision", "", "Not gated.", ""]
    champion = decision.champion.get("uri", "the champion") if decision.champion else "no champion"
    return [
        "## Gate decision",
        "",
        f"**{decision.outcome.upper()}** against {champion} with policy `{decision.policy}` "
        f"({decision.decided_at}); {decision.reason()}.",
        "",
        *([f"Compared on {decision.rows.describe()}.", ""] if decision.rows is not None else []),
        decision.table(),
        "",
    ]
