"""Automatic rollback rules: read from the ``rollout`` section of the policy file, and evaluated.

```yaml
rollout:
  window_s: 60            # sliding window the rules look at
  min_requests: 30        # fewer challenger requests in the window: no verdict yet
  max_error_rate: 0.05    # challenger calls that failed or ran out of time (answered by the fallback)
  max_p99_ms: 500         # challenger model latency, 99th percentile
  max_disagreement: 0.5   # share of requests where the challenger's intent differs from the champion's
  feedback_max_drop: 0.05 # challenger accuracy on feedback vs the champion's, one-sided z-test at alpha
  feedback_min_samples: 30
  alpha: 0.05
  ramp: [5, 25, 50, 100]  # optional canary ramp (percent); each step after every rule held for hold_s
  hold_s: 300
```
"""

from __future__ import annotations

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
_COUNTS = {"min_requests": 1, "feedback_min_samples": 1}


@dataclass(frozen=True)
class RolloutRules:
    window_s: float = 60.0
    min_requests: int = 30
    max_error_rate: float = 0.05
    max_p99_ms: float = 500.0
    max_disagreement: float = 0.5
    feedback_max_drop: float = 0.05
    feedback_min_samples: int = 30
    alpha: float = 0.05
    ramp: tuple[float, ...] = field(default_factory=tuple)
    hold_s: float = 300.0


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
        allowed = {*_NUMBERS, *_COUNTS, "ramp"}
        values: dict[str, Any] = {}
        for key, value_node in self.mapping(node, SECTION, allowed=allowed).items():
            if key in _COUNTS:
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
class WindowStats:
    """What the monitor saw of one model in the window."""

    requests: int = 0
    errors: int = 0
    p99_ms: float = 0.0
    compared: int = 0  # requests where both models answered (shadow, or canary with a champion answer)
    disagreements: int = 0
    feedback: int = 0
    feedback_correct: int = 0


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
    if challenger.compared >= rules.min_requests:
        rate = challenger.disagreements / challenger.compared
        if rate > rules.max_disagreement:
            limit = f"max {rules.max_disagreement:.1%}"
            detail = f"disagrees with the champion on {rate:.1%} of {challenger.compared} ({limit})"
            found.append(Breach("disagreement", detail))
    drop = feedback_drop(rules, challenger, champion)
    if drop is not None:
        found.append(drop)
    return found


def feedback_drop(rules: RolloutRules, challenger: WindowStats, champion: WindowStats) -> Breach | None:
    """One-sided two-proportion z-test: is the challenger's feedback accuracy lower by more than the
    tolerated drop? Needs ``feedback_min_samples`` verdicts on each side."""
    n1, n0 = challenger.feedback, champion.feedback
    if min(n1, n0) < rules.feedback_min_samples:
        return None
    p1, p0 = challenger.feedback_correct / n1, champion.feedback_correct / n0
    p_value = proportion_drop_p_value(
        champion.feedback_correct, n0, challenger.feedback_correct, n1, rules.feedback_max_drop
    )
    if p_value < rules.alpha:
        return Breach(
            "feedback_accuracy",
            f"accuracy on feedback {p1:.1%} (n={n1}) vs champion {p0:.1%} (n={n0}), worse by more than "
            f"{rules.feedback_max_drop:.0%} (z-test p={p_value:.3g})",
        )
    return None
