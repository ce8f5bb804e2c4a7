"""Reading what the alerting tests check: the Prometheus rules under ``deploy/prometheus``, the metric
selectors in their PromQL, the runbook's sections and the ``deskpilot`` commands it cites."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
REQUIRE_ENV = "DESKPILOT_REQUIRE_PROMETHEUS"


def prometheus_binary(name: str) -> str:
    """The path of ``promtool`` or ``prometheus`` (Debian package ``prometheus``); skips without it unless
    ``DESKPILOT_REQUIRE_PROMETHEUS=1`` makes that a failure (``.ci/run`` sets it)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        message = f"no {name}: install the Debian package prometheus"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Rule:
    path: Path
    group: str
    name: str
    alert: bool
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]


def load_rules() -> list[Rule]:
    rules = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                rules.append(
                    Rule(
                        path=path,
                        group=group["name"],
                        name=rule.get("alert") or rule["record"],
                        alert="alert" in rule,
                        expr=rule["expr"],
                        labels=rule.get("labels", {}),
                        annotations=rule.get("annotations", {}),
                    )
                )
    return rules


# -- PromQL, as far as these rules use it ----------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*")
      | (?P<matchers>\{[^}]*\})
      | (?P<range>\[[^\]]*\])
      | (?P<number>\d[\w.]*)
      | (?P<name>[A-Za-z_:][\w:]*)
      | (?P<open>\()
      | (?P<close>\))
      | (?P<space>\s+)
      | (?P<other>.)""",
    re.VERBOSE,
)
_MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')
_EQUALS = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATORS = frozenset({"and", "or", "unless", "offset", "bool"})


@dataclass
class Selector:
    metric: str
    labels: set[str] = field(default_factory=set)
    equals: dict[str, str] = field(default_factory=dict)
    """The ``label="value"`` matchers."""


@dataclass
class Parsed:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)
    """Label names in ``by``, ``without``, ``on``, ``ignoring`` and ``group_left/right`` lists."""


def parse_promql(expr: str) -> Parsed:
    """The metric selectors (name and matcher labels) and grouping labels of ``expr``."""
    tokens = [
        (kind, text)
        for match in _TOKEN.finditer(expr)
        for kind, text in match.groupdict().items()
        if text is not None and kind != "space"
    ]
    parsed = Parsed()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "name" and text in GROUPING and following[0] == "open":
            end = next(j for j in range(i + 1, len(tokens)) if tokens[j][0] == "close")
            parsed.grouping |= {t for k, t in tokens[i + 2 : end] if k == "name"}
            i = end + 1
            continue
        if kind == "name" and text not in OPERATORS | AGGREGATIONS | GROUPING and following[0] != "open":
            selector = Selector(text)
            if following[0] == "matchers":
                selector.labels = set(_MATCHER.findall(following[1]))
                selector.equals = dict(_EQUALS.findall(following[1]))
            parsed.selectors.append(selector)
        elif kind == "matchers" and (i == 0 or tokens[i - 1][0] != "name"):
            raise AssertionError(f"a selector without a metric name in {expr!r}")
        i += 1
    return parsed


# -- the runbook ---------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections(text: str) -> dict[str, str]:
    """Level-2 heading -> the text up to the next level-2 heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def runbook_anchors(text: str) -> set[str]:
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# "deskpilot" as a command, not as the name of a Kubernetes namespace (``kubectl -n deskpilot delete ...``)
_INVOCATION = re.compile(
    r"(?:^|[\s;&|(`])(?<!-n )(?<!--namespace )(?<!--namespace=)deskpilot(?![\w:-])"
    r"((?:[ \t]+[\w:/@.\-=*\"']+)*)"
)


def cited_commands(text: str) -> list[list[str]]:
    """The words after ``deskpilot`` in every invocation inside the runbook's fenced code blocks."""
    found = []
    for block in _FENCE.findall(text):
        for line in block.splitlines():
            if line.lstrip().startswith("#"):
                continue
            found += [m.group(1).split() for m in _INVOCATION.finditer(line) if m.group(1).strip()]
    return found
