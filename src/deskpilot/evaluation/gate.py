"""The acceptance gate: a policy applied to a challenger's evaluation (and the champion's, on the same rows).

Rule semantics, recorded in docs/adr/0005:

* floor / ceiling: the measured value against the limit. A metric the evaluation could not measure (no MFT
  cases in the suite, too few rows per class) is ``skipped``, which does not fail the gate.
* relative (not significantly worse): with ``Δ = challenger − champion`` signed so that positive is better,
  the rule fails when ``Δ < −max_drop`` and a one-sided paired bootstrap says so at the policy's significance
  level; for accuracy, McNemar's test flagging a significant difference in the same direction also fails it.
* improvement (``require_improvement``): the primary metric must be significantly better (bootstrap, and
  McNemar for accuracy).
* no champion: relative and improvement rules take the policy's ``on_missing_champion`` outcome.
* which rows (ADR 0019): the caller evaluates both models on rows neither trained on and says so in a
  :class:`ComparedRows` (how many were offered, left out, and trained on by each model); when a comparison is
  forced onto rows a model trained on, the decision's reason reports that leakage. A champion that shares no
  such row with the challenger fails the relative rules: nothing fair is left to compare on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from deskpilot import tags
from deskpilot.evaluation.bootstrap import ModelOutcome, OutcomeCells
from deskpilot.evaluation.evaluate import Evaluation, json_safe
from deskpilot.evaluation.policy import Limit, Policy, RelativeRule
from deskpilot.evaluation.significance import McNemarResult, mcnemar, p_better, p_worse

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass(frozen=True)
class RuleOutcome:
    kind: str  # floor | ceiling | relative | improvement
    metric: str
    measured: float | None
    limit: str
    status: str  # pass | fail | skipped
    detail: str = ""
    line: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass(frozen=True)
class ComparedRows:
    """The rows behind the relative rules: of ``offered`` rows, ``compared`` were used; ``*_seen`` count the
    offered rows each model trained or was tuned on (None: unknown here). Unless ``forced``, a row either
    model saw is left out; forced, it is kept and reported as leakage."""

    offered: int
    compared: int
    champion_seen: int | None
    challenger_seen: int | None
    forced: bool = False
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def left_out(self) -> int:
        return self.offered - self.compared

    def leaked(self, seen: int | None) -> int | None:
        """Of the compared rows, how many a model with ``seen`` offered rows it saw trained on."""
        if seen is None:
            return None
        return seen if self.forced else 0

    @property
    def leakage(self) -> str:
        """What the comparison is tainted by, in words; empty when the compared rows are unseen by both."""
        parts = []
        for who, seen in (("the champion", self.champion_seen), ("the challenger", self.challenger_seen)):
            leaked = self.leaked(seen)
            if leaked is None:
                parts.append(f"which rows {who} trained on is unknown")
            elif leaked:
                parts.append(f"{who} trained on {leaked:,} of the {self.compared:,} compared rows")
        if not parts:
            return ""
        return ("forced comparison, leakage: " if self.forced else "") + "; ".join(parts)

    @property
    def unseen_by_both(self) -> bool:
        return not self.leakage

    def describe(self) -> str:
        """One line for the CLI and the model card."""
        text = f"{self.compared:,} of {self.offered:,} rows" + (f" ({self.source})" if self.source else "")
        if not self.forced and self.left_out:
            who = [
                f"the {name} on {seen:,}"
                for name, seen in (("champion", self.champion_seen), ("challenger", self.challenger_seen))
                if seen
            ]
            text += f"; {self.left_out:,} left out because a model trained on them ({', '.join(who)})"
        if self.leakage:
            text += f"; {self.leakage}"
        return text + "".join(f"; {note}" for note in self.notes)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    policy: str
    rules: list[RuleOutcome]
    compared_rows: int = 0
    rows: ComparedRows | None = None  # which rows the relative rules read, and any leakage into them
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def failures(self) -> list[RuleOutcome]:
        return [rule for rule in self.rules if rule.failed]

    @property
    def outcome(self) -> str:
        return PASS if self.passed else FAIL

    def reason(self) -> str:
        if self.passed:
            text = "every rule holds"
        else:
            text = "; ".join(f"{r.kind} {r.metric}: {r.detail or r.limit}" for r in self.failures)
        if self.champion is not None and self.rows is not None and self.rows.leakage:
            text += f" ({self.rows.leakage})"
        return text

    def tags(self) -> dict[str, str]:
        """The registry tags that record this decision on the version it judged."""
        return {
            tags.GATE: self.outcome,
            tags.GATE_POLICY: self.policy,
            tags.GATE_REASON: self.reason()[:4000],
            tags.GATE_CHAMPION: (self.champion or {}).get("uri") or "none",
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.rows is not None:
            out["rows"].update(left_out=self.rows.left_out, leakage=self.rows.leakage)
        out["outcome"] = self.outcome
        out["reason"] = self.reason()
        return dict(json_safe(out))

    def table(self) -> str:
        """The decision as a Markdown table, one rule per row."""
        lines = [
            "| rule | metric | measured | limit | result | detail |",
            "|---|---|---|---|---|---|",
        ]
        for rule in self.rules:
            measured = "n/a" if rule.measured is None else f"{rule.measured:.4f}"
            lines.append(
                f"| {rule.kind} | {rule.metric} | {measured} | {rule.limit} | {rule.status.upper()} | "
                f"{rule.detail} |"
            )
        return "\n".join(lines)


def decide(
    challenger: Evaluation,
    champion: Evaluation | None,
    policy: Policy,
    *,
    seed: int = 0,
    rows: ComparedRows | None = None,
    unmatched_champion: dict[str, Any] | None = None,
) -> GateDecision:
    """Apply ``policy``. ``rows`` says which rows the two evaluations cover; ``unmatched_champion`` names a
    champion that could not be compared (its relative rules fail): it trained on every row offered, or its
    ``unmatched_reason`` says why (a champion that knows none of the evaluation labels)."""
    rules = [_absolute(challenger, limit, higher_is_better=True) for limit in policy.floors]
    rules += [_absolute(challenger, limit, higher_is_better=False) for limit in policy.ceilings]
    compared = 0
    champion_info = dict(champion.model) if champion is not None else unmatched_champion
    if champion is None and unmatched_champion is not None:
        detail = str(
            unmatched_champion.get("unmatched_reason")
            or "no rows that neither model trained on: the champion trained on every row offered; gate on "
            "held-out data (`deskpilot gate --data FILE`)"
        )
        rules += [
            RuleOutcome("relative", r.metric, None, f"drop ≤ {r.max_drop:g}", FAIL, detail, r.line)
            for r in policy.relative
        ]
        if policy.require_improvement:
            rules.append(RuleOutcome("improvement", policy.primary_metric, None, "better", FAIL, detail))
    elif champion is None:
        status = PASS if policy.on_missing_champion == PASS else FAIL
        detail = f"no champion; the policy says {policy.on_missing_champion}"
        rules += [
            RuleOutcome("relative", r.metric, None, f"drop ≤ {r.max_drop:g}", status, detail, r.line)
            for r in policy.relative
        ]
        if policy.require_improvement:
            rules.append(RuleOutcome("improvement", policy.primary_metric, None, "better", status, detail))
    else:
        comparison = _Comparison(challenger, champion, policy, seed)
        compared = comparison.rows
        rules += [comparison.relative(rule) for rule in policy.relative]
        if policy.require_improvement:
            rules.append(comparison.improvement(policy.primary_metric))
    return GateDecision(
        passed=not any(rule.failed for rule in rules),
        challenger=dict(challenger.model),
        champion=champion_info,
        policy=policy.source,
        rules=rules,
        compared_rows=compared,
        rows=rows,
    )


def _absolute(evaluation: Evaluation, limit: Limit, *, higher_is_better: bool) -> RuleOutcome:
    kind, sign = ("floor", "≥") if higher_is_better else ("ceiling", "≤")
    measured = evaluation.measured(limit.metric)
    bound = f"{sign} {limit.value:g}"
    if measured is None or math.isnan(measured):
        return RuleOutcome(
            kind, limit.metric, None, bound, SKIPPED, "not measured by this evaluation", limit.line
        )
    ok = measured >= limit.value if higher_is_better else measured <= limit.value
    detail = "" if ok else f"{measured:.4f} is {'below' if higher_is_better else 'above'} {limit.value:g}"
    return RuleOutcome(kind, limit.metric, measured, bound, PASS if ok else FAIL, detail, limit.line)


class _Comparison:
    """Champion and challenger outcomes on the rows whose label the challenger knows, as shared cells."""

    def __init__(self, challenger: Evaluation, champion: Evaluation, policy: Policy, seed: int) -> None:
        if challenger.rows.truth.size != champion.rows.truth.size or not np.array_equal(
            challenger.rows.truth, champion.rows.truth
        ):
            raise ValueError("champion and challenger must be evaluated on the same rows")
        self.policy = policy
        self.seed = seed
        keep = challenger.rows.known
        self.rows = int(keep.sum())
        labels = sorted(
            {str(x) for x in challenger.rows.truth[keep]}
            | {str(x) for x in challenger.rows.predicted[keep]}
            | {str(x) for x in champion.rows.predicted[keep]}
        )
        index = {label: i for i, label in enumerate(labels)}

        def encode(values: np.ndarray) -> np.ndarray:
            return np.array([index[str(v)] for v in values], dtype=np.int64)

        truth = encode(challenger.rows.truth[keep])
        self.outcomes = [
            ModelOutcome(encode(e.rows.predicted[keep]), e.rows.confidence[keep], e.rows.auto[keep])
            for e in (champion, challenger)
        ]
        self.truth = truth
        cells = OutcomeCells(truth, self.outcomes, len(labels))
        metrics = sorted({r.metric for r in policy.relative} | {policy.primary_metric})
        self.differences = cells.paired_differences_many(metrics, n_boot=policy.bootstrap, seed=seed)
        self._mcnemar: McNemarResult | None = None

    @property
    def mcnemar(self) -> McNemarResult:
        if self._mcnemar is None:
            champion, challenger = self.outcomes
            self._mcnemar = mcnemar(champion.predicted == self.truth, challenger.predicted == self.truth)
        return self._mcnemar

    def relative(self, rule: RelativeRule) -> RuleOutcome:
        alpha = self.policy.significance
        observed, samples = self.differences[rule.metric]
        p_value = p_worse(samples, rule.max_drop)
        worse = observed < -rule.max_drop and p_value < alpha
        low, high = np.quantile(samples[np.isfinite(samples)], [alpha / 2, 1 - alpha / 2]) + 0.0
        detail = f"Δ {observed:+.4f} (CI {low:+.4f}…{high:+.4f}), bootstrap p={p_value:.4f}"
        if rule.metric == "accuracy":
            test = self.mcnemar
            b, c = test.only_champion_correct, test.only_challenger_correct
            detail += f"; McNemar b={b} c={c} p={test.p_value:.4g}"
            worse = worse or (
                observed < -rule.max_drop
                and test.p_value < alpha
                and test.only_champion_correct > test.only_challenger_correct
            )
        verdict = "significantly worse" if worse else "not significantly worse"
        return RuleOutcome(
            "relative",
            rule.metric,
            observed,
            f"drop ≤ {rule.max_drop:g} at α={alpha:g}",
            FAIL if worse else PASS,
            f"{verdict}: {detail}",
            rule.line,
        )

    def improvement(self, metric: str) -> RuleOutcome:
        alpha = self.policy.significance
        observed, samples = self.differences[metric]
        p_value = p_better(samples)
        better = observed > 0 and p_value < alpha
        detail = f"Δ {observed:+.4f}, bootstrap p={p_value:.4f}"
        if metric == "accuracy":
            test = self.mcnemar
            better = better and test.p_value < alpha
            detail += f"; McNemar p={test.p_value:.4g}"
        verdict = "significantly better" if better else "not significantly better"
        return RuleOutcome(
            "improvement",
            metric,
            observed,
            f"better at α={alpha:g}",
            PASS if better else FAIL,
            f"{verdict}: {detail}",
        )
