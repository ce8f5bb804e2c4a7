"""Gate policies: which numbers a model must reach to ship, read from YAML with line-accurate errors.

```yaml
version: 1
significance: 0.05          # alpha of every significance test
bootstrap: 1000             # resamples for intervals and paired tests
primary_metric: accuracy
require_improvement: false  # true: the challenger must be significantly better on the primary metric
on_missing_champion: pass   # what relative rules do when there is no champion yet: pass | fail
per_class_min_support: 10   # classes with fewer evaluation rows are left out of per_class_f1
floors:                     # measured value must be >= limit
  accuracy: 0.80
  per_class_f1: 0.30
  behavioral_inv: 0.80
ceilings:                   # measured value must be <= limit
  ece: 0.10
  latency_p99_ms: 250
relative:                   # not significantly worse than the champion by more than max_drop
  accuracy: {max_drop: 0.005}
  macro_f1: {max_drop: 0.01}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from deskpilot.errors import PolicyError
from deskpilot.evaluation.yaml_reader import YamlReader

FLOOR_METRICS = frozenset(
    {
        "accuracy",
        "macro_f1",
        "auto_coverage",
        "auto_precision",
        "per_class_f1",
        "behavioral_mft",
        "behavioral_inv",
        "behavioral_dir",
    }
)
CEILING_METRICS = frozenset({"ece", "latency_p50_ms", "latency_p99_ms", "cost_per_1k"})
RELATIVE_METRICS = frozenset({"accuracy", "macro_f1", "auto_coverage", "auto_precision", "ece"})
PRIMARY_METRICS = RELATIVE_METRICS
_TOP_LEVEL = frozenset(
    {
        "version",
        "significance",
        "bootstrap",
        "primary_metric",
        "require_improvement",
        "on_missing_champion",
        "per_class_min_support",
        "floors",
        "ceilings",
        "relative",
        "rollout",
    }
)
DEFAULT_POLICY_RESOURCE = "default_policy.yaml"


@dataclass(frozen=True)
class Limit:
    metric: str
    value: float
    line: int


@dataclass(frozen=True)
class RelativeRule:
    metric: str
    max_drop: float
    line: int


@dataclass(frozen=True)
class Policy:
    source: str
    floors: tuple[Limit, ...] = ()
    ceilings: tuple[Limit, ...] = ()
    relative: tuple[RelativeRule, ...] = ()
    significance: float = 0.05
    bootstrap: int = 1000
    primary_metric: str = "accuracy"
    require_improvement: bool = False
    on_missing_champion: str = "pass"
    per_class_min_support: int = 10


def load_policy(path: Path | None = None) -> Policy:
    """The policy at ``path``, or the packaged default; any mistake is a :class:`PolicyError` with a line."""
    text, source = read_policy_text(path)
    return parse_policy(text, source=source)


def read_policy_text(path: Path | None) -> tuple[str, str]:
    """The policy file's text and the name its errors use (the packaged default when ``path`` is None).

    The file has two readers: the gate sections here, the ``rollout`` section in
    :mod:`deskpilot.rollout.rules`.
    """
    if path is None:
        text = resources.files("deskpilot.evaluation").joinpath(DEFAULT_POLICY_RESOURCE).read_text()
        return text, f"<default {DEFAULT_POLICY_RESOURCE}>"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError as exc:
        raise PolicyError(f"{path}: policy file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from exc


def parse_policy(text: str, *, source: str) -> Policy:
    reader = _PolicyReader(source, PolicyError)
    root = reader.compose(text, "the policy")
    top = reader.entries(root, "the policy")
    for key, (key_node, _) in top.items():
        if key not in _TOP_LEVEL:
            reader.fail(key_node, f"unknown setting {key!r}; known: {', '.join(sorted(_TOP_LEVEL))}")
    settings: dict[str, Any] = {}
    if "version" in top and reader.number(top["version"][1], "version") != 1:
        reader.fail(top["version"][1], "only policy version 1 exists")
    if "significance" in top:
        settings["significance"] = reader.fraction(top["significance"][1], "significance", open_zero=True)
    if "bootstrap" in top:
        settings["bootstrap"] = reader.integer(top["bootstrap"][1], "bootstrap", minimum=100)
    if "per_class_min_support" in top:
        node = top["per_class_min_support"][1]
        settings["per_class_min_support"] = reader.integer(node, "per_class_min_support", minimum=1)
    if "primary_metric" in top:
        node = top["primary_metric"][1]
        settings["primary_metric"] = reader.choice(node, "primary_metric", PRIMARY_METRICS)
    if "require_improvement" in top:
        settings["require_improvement"] = reader.boolean(top["require_improvement"][1], "require_improvement")
    if "on_missing_champion" in top:
        node = top["on_missing_champion"][1]
        settings["on_missing_champion"] = reader.choice(node, "on_missing_champion", {"pass", "fail"})
    floors = reader.limits(top.get("floors"), "floors", FLOOR_METRICS)
    ceilings = reader.limits(top.get("ceilings"), "ceilings", CEILING_METRICS)
    relative = reader.relative(top.get("relative"))
    return Policy(source=source, floors=floors, ceilings=ceilings, relative=relative, **settings)


class _PolicyReader(YamlReader):
    """The policy's own sections on top of the shared node checks."""

    def limits(
        self, entry: tuple[Node, Node] | None, section: str, known: frozenset[str]
    ) -> tuple[Limit, ...]:
        if entry is None:
            return ()
        limits = []
        for metric, (key_node, value_node) in self.entries(entry[1], section).items():
            if metric not in known:
                names = ", ".join(sorted(known))
                self.fail(key_node, f"unknown metric {metric!r} in {section}; known: {names}")
            value = self.number(value_node, f"{section}.{metric}")
            if value < 0:
                self.fail(value_node, f"{section}.{metric} must not be negative")
            limits.append(Limit(metric, value, self.line(key_node)))
        return tuple(limits)

    def relative(self, entry: tuple[Node, Node] | None) -> tuple[RelativeRule, ...]:
        if entry is None:
            return ()
        rules = []
        for metric, (key_node, value_node) in self.entries(entry[1], "relative").items():
            if metric not in RELATIVE_METRICS:
                known = ", ".join(sorted(RELATIVE_METRICS))
                self.fail(key_node, f"unknown metric {metric!r} in relative; known: {known}")
            options = self.entries(value_node, f"relative.{metric}")
            for option, (option_node, _) in options.items():
                if option != "max_drop":
                    self.fail(option_node, f"unknown option {option!r} in relative.{metric}; known: max_drop")
            max_drop = 0.0
            if "max_drop" in options:
                max_drop = self.fraction(options["max_drop"][1], f"relative.{metric}.max_drop")
            rules.append(RelativeRule(metric, max_drop, self.line(key_node)))
        return tuple(rules)
