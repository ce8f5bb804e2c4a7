"""Automatic rollback rules: read from the ``rollout`` section of the policy file, and evaluated.

```yaml
rollout:
  window_s: 60              # sliding window the rules look at
  min_requests: 30          # fewer challenger requests in the window: no verdict yet
  max_error_rate: 0.05      # challenger calls that failed or ran out of time (answered by the fallback)
  max_p99_ms: 500           # challenger model latency, 99th percentile
  max_disagreement: 0.5     # share of requests where the challenger's intent differs from the champion's
  disagreement_min_tenants: 2  # ...in the traffic of this many tenants, and without any single one
  feedback_max_drop: 0.05   # challenger accuracy on feedback vs the champion's, one-sided z-test at alpha
  feedback_min_samples: 30  # verdicts on each side, counted after the per-tenant cap
  feedback_min_tenants: 2   # tenants with verdicts on each side; from 2 on, none decides alone
  feedback_tenant_cap: 100  # the most verdicts one tenant counts for on each side of the window
  alpha: 0.05
  ramp: [5, 25, 50, 100]    # optional canary ramp (percent); each step after every rule held for hold_s
  hold_s: 300
  retrain_to_shadow: true   # a version retrained from feedback that passes its gate goes to shadow itself
```

A verdict is a claim one tenant makes, so the feedback rule is built to survive a tenant making false ones
(:mod:`deskpilot.rollout.monitor` counts one verdict per tenant and decision; a changed verdict replaces the
earlier one):

* each tenant counts for at most ``feedback_tenant_cap`` verdicts on each side of the window (more are scaled
  down to the cap, keeping that tenant's accuracy), so no tenant outweighs the others without limit;
* each side needs verdicts from ``feedback_min_tenants`` tenants, and from 2 on the drop must also hold with
  any single tenant's verdicts left out of both sides: one tenant never rolls a challenger back for everybody.

The disagreement rule is held to the same "no single tenant" test (``disagreement_min_tenants``): a tenant
sending messages no intent fits, on which any two models differ, would otherwise roll a shadow back for
everybody. The error and latency rules are not: a message that makes the challenger fail or crawl where the
champion answered is a fault of the challenger, whoever sent it. ``feedback_min_tenants: 1`` and
``disagreement_min_tenants: 1`` let one tenant decide, for a deployment that serves a single tenant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from deskpilot.errors import PolicyError
from deskpilot.evaluation.policy import read_policy_text
from deskpilot.evaluation.significance import proportion_drop_p_value
from deskpilot.evaluation.yaml_reader import YamlReader

SECTION = "rollout"
_NUMBERS = {
    "window_s": 1.0,
    "max_error_rate": 0.0,
    "max_p99_ms": 0.0,
    "max_disagreement": 0.0,
    "feedback_max_drop": 0.0,
    "alpha": 0.0,
    "hold_s": 0.0,
}
_COUNTS = {
    "min_requests": 1,
    "feedback_min_samples": 1,
    "feedback_min_tenants": 1,
    "feedback_tenant_cap": 1,
    "disagreement_min_tenants": 1,
}


@dataclass(frozen=True)
class RolloutRules:
    window_s: float = 60.0
    min_requests: int = 30
    max_error_rate: float = 0.05
    max_p99_ms: float = 500.0
    max_disagreement: float = 0.5
    feedback_max_drop: float = 0.05
    feedback_min_samples: int = 30
    feedback_min_tenants: int = 2
    feedback_tenant_cap: int = 100
    disagreement_min_tenants: int = 2
    alpha: float = 0.05
    ramp: tuple[float, ...] = field(default_factory=tuple)
    hold_s: float = 300.0
    retrain_to_shadow: bool = True


def load_rollout_rules(path: Path | None = None) -> RolloutRules:
    """The ``rollout`` section of the policy at ``path`` (or the packaged default); defaults without one.

    Mistakes are :class:`PolicyError` with file and line, like the gate sections'.
    """
    text, source = read_policy_text(path)
    return parse_rollout_rules(text, source=source)


def parse_rollout_rules(text: str, *, source: str) -> RolloutRules:
    reader = _RulesReader(source, PolicyError)
    top = reader.entries(reader.compose(text, "the policy"), "the policy")
    return reader.rules(top[SECTION][1]) if SECTION in top else RolloutRules()


class _RulesReader(YamlReader):
    def rules(self, node: Node) -> RolloutRules:
        allowed = {*_NUMBERS, *_COUNTS, "ramp", "retrain_to_shadow"}
        values: dict[str, Any] = {}
        for key, value_node in self.mapping(node, SECTION, allowed=allowed).items():
            if key == "retrain_to_shadow":
                values[key] = self.boolean(value_node, f"rollout.{key}")
            elif key in _COUNTS:
                values[key] = self.integer(value_node, f"rollout.{key}", minimum=_COUNTS[key])
            elif key == "ramp":
                steps = [
                    self.number(item, "rollout.ramp step")
                    for item in self.sequence(value_node, "rollout.ramp")
                ]
                if any(not 0 < b <= 100 for b in steps) or steps != sorted(set(steps)):
                    self.fail(value_node, "rollout.ramp must be increasing percentages in (0, 100]")
                values[key] = tuple(steps)
            else:
                value = self.number(value_node, f"rollout.{key}")
                if value < _NUMBERS[key]:
                    self.fail(value_node, f"rollout.{key} must be at least {_NUMBERS[key]:g}")
                values[key] = value
        return RolloutRules(**values)


@dataclass(frozen=True)
class TenantCounts:
    """One tenant's share of a windowed count: ``n`` events, ``hits`` of them the kind a rule counts
    (verdicts and the correct ones; comparisons and the disagreements)."""

    tenant: str
    n: int
    hits: int


@dataclass(frozen=True)
class WindowStats:
    """What the monitor saw of one model in the window."""

    requests: int = 0
    errors: int = 0
    p99_ms: float = 0.0
    compared: int = 0  # requests where both models answered (shadow, or canary with a champion answer)
    disagreements: int = 0
    feedback: int = 0  # verdicts, one per (tenant, decision), over all tenants
    feedback_correct: int = 0
    feedback_by_tenant: tuple[TenantCounts, ...] = ()  # the same, per tenant (empty: not attributed)
    # comparisons (n) and disagreements (hits) per tenant, of those that name one (see disagreement rule)
    compared_by_tenant: tuple[TenantCounts, ...] = ()

    def feedback_sources(self) -> tuple[TenantCounts, ...]:
        """Per tenant; verdicts counted without a tenant (by hand, or by an older caller) are one source."""
        if self.feedback_by_tenant or not self.feedback:
            return self.feedback_by_tenant
        return (TenantCounts("", self.feedback, self.feedback_correct),)


@dataclass(frozen=True)
class Breach:
    rule: str
    detail: str


def breaches(rules: RolloutRules, challenger: WindowStats, champion: WindowStats) -> list[Breach]:
    """Every rule the challenger breaks in this window (empty: it may stay, or ramp)."""
    found = []
    if challenger.requests >= rules.min_requests:
        error_rate = challenger.errors / challenger.requests
        if error_rate > rules.max_error_rate:
            limit = f"max {rules.max_error_rate:.1%}"
            found.append(
                Breach("error_rate", f"{error_rate:.1%} of {challenger.requests} calls failed ({limit})")
            )
        if challenger.p99_ms > rules.max_p99_ms:
            detail = f"p99 {challenger.p99_ms:.0f} ms (max {rules.max_p99_ms:.0f} ms)"
            found.append(Breach("p99_latency", detail))
    disagreement = disagreement_breach(rules, challenger)
    if disagreement is not None:
        found.append(disagreement)
    drop = feedback_drop(rules, challenger, champion)
    if drop is not None:
        found.append(drop)
    return found


def disagreement_breach(rules: RolloutRules, challenger: WindowStats) -> Breach | None:
    """Too many comparisons where the challenger's intent differs from the champion's (with at least
    ``min_requests`` of them). Where the comparisons name their tenants, they must come from
    ``disagreement_min_tenants`` tenants and, from 2 on, the rate must stay over the limit without any single
    tenant's: one tenant's traffic (messages no intent fits, say, on which any two models differ) does not
    roll a challenger back for everybody. Comparisons without a tenant are judged on their own, as before."""
    if _too_many_disagreements(rules, challenger.compared, challenger.disagreements) is None:
        return None
    tenants = {c.tenant: (c.n, c.hits) for c in challenger.compared_by_tenant if c.n > 0}
    robust = ""
    if tenants and rules.disagreement_min_tenants >= 2:
        if len(tenants) < rules.disagreement_min_tenants:
            return None
        for n, hits in tenants.values():
            if (
                _too_many_disagreements(rules, challenger.compared - n, challenger.disagreements - hits)
                is None
            ):
                return None  # this tenant's traffic alone decides
        robust = f"; from {len(tenants)} tenants, holds without any single tenant"
    rate = challenger.disagreements / challenger.compared
    limit = f"max {rules.max_disagreement:.1%}"
    return Breach(
        "disagreement",
        f"disagrees with the champion on {rate:.1%} of {challenger.compared} ({limit}){robust}",
    )


def _too_many_disagreements(rules: RolloutRules, compared: int, disagreements: int) -> float | None:
    """The disagreement rate when it breaks the rule, else None (too few comparisons count as no)."""
    if compared < rules.min_requests:
        return None
    rate = disagreements / compared
    return rate if rate > rules.max_disagreement else None


def capped(sources: tuple[TenantCounts, ...], cap: int) -> dict[str, tuple[int, int]]:
    """tenant -> (verdicts, correct) with each tenant's verdicts scaled down to at most ``cap``, its accuracy
    kept (correct rounded half up)."""
    counted = {}
    for source in sources:
        if source.n <= 0:
            continue
        n = min(source.n, cap)
        correct = source.hits if n == source.n else math.floor(source.hits * n / source.n + 0.5)
        counted[source.tenant] = (n, correct)
    return counted


def feedback_drop(rules: RolloutRules, challenger: WindowStats, champion: WindowStats) -> Breach | None:
    """One-sided two-proportion z-test: is the challenger's feedback accuracy lower by more than the
    tolerated drop? Needs ``feedback_min_samples`` (capped) verdicts from ``feedback_min_tenants`` tenants
    on each side and, from two tenants on, the same verdict with any one tenant left out."""
    sides = [capped(stats.feedback_sources(), rules.feedback_tenant_cap) for stats in (challenger, champion)]
    if min(len(side) for side in sides) < rules.feedback_min_tenants:
        return None
    totals = [_sum(side.values()) for side in sides]
    p_value = _drop_p_value(rules, *totals)
    if p_value is None or p_value >= rules.alpha:
        return None
    if rules.feedback_min_tenants >= 2:
        for tenant in set(sides[0]) | set(sides[1]):
            without = [_sum(counts for t, counts in side.items() if t != tenant) for side in sides]
            left_out = _drop_p_value(rules, *without)
            if left_out is None or left_out >= rules.alpha:
                return None  # this tenant's verdicts alone decide: no breach
    (n1, k1), (n0, k0) = totals
    tenants = len(set(sides[0]) | set(sides[1]))
    robust = "; holds without any single tenant" if rules.feedback_min_tenants >= 2 else ""
    return Breach(
        "feedback_accuracy",
        f"accuracy on feedback {k1 / n1:.1%} (n={n1}) vs champion {k0 / n0:.1%} (n={n0}), worse by more than "
        f"{rules.feedback_max_drop:.0%} (z-test p={p_value:.3g}); verdicts of {tenants} tenant(s), at most "
        f"{rules.feedback_tenant_cap} each per side{robust}",
    )


def _sum(counts: Iterable[tuple[int, int]]) -> tuple[int, int]:
    n = correct = 0
    for verdicts, right in counts:
        n += verdicts
        correct += right
    return n, correct


def _drop_p_value(
    rules: RolloutRules, challenger: tuple[int, int], champion: tuple[int, int]
) -> float | None:
    """The z-test's p-value, or None below ``feedback_min_samples`` on either side."""
    (n1, k1), (n0, k0) = challenger, champion
    if min(n1, n0) < rules.feedback_min_samples:
        return None
    return proportion_drop_p_value(k0, n0, k1, n1, rules.feedback_max_drop)
