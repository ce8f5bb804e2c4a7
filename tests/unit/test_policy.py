"""Gate policy files: the packaged default, and a clear error with the line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpilot.errors import PolicyError
from deskpilot.evaluation.policy import load_policy, parse_policy

GOOD = """\
version: 1
significance: 0.01
bootstrap: 500
primary_metric: macro_f1
require_improvement: true
on_missing_champion: fail
floors:
  accuracy: 0.9
  behavioral_inv: 0.8
ceilings:
  latency_p99_ms: 50
relative:
  accuracy: {max_drop: 0.002}
  ece: {}
"""


def test_packaged_default_policy_loads() -> None:
    policy = load_policy()
    assert policy.source.startswith("<default")
    assert {limit.metric for limit in policy.floors} >= {"accuracy", "macro_f1", "per_class_f1"}
    assert {rule.metric for rule in policy.relative} >= {"accuracy", "macro_f1"}
    assert policy.on_missing_champion == "pass"


def test_full_policy_parses_with_lines() -> None:
    policy = parse_policy(GOOD, source="p.yaml")
    assert policy.significance == 0.01
    assert policy.bootstrap == 500
    assert policy.primary_metric == "macro_f1"
    assert policy.require_improvement
    assert policy.on_missing_champion == "fail"
    assert [(f.metric, f.value, f.line) for f in policy.floors] == [
        ("accuracy", 0.9, 8),
        ("behavioral_inv", 0.8, 9),
    ]
    assert [(c.metric, c.value) for c in policy.ceilings] == [("latency_p99_ms", 50.0)]
    assert [(r.metric, r.max_drop, r.line) for r in policy.relative] == [
        ("accuracy", 0.002, 13),
        ("ece", 0.0, 14),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "floors:\n  accuracy: 0.9\n  recall_at_5: 0.5\n",
            r"p.yaml:3: unknown metric 'recall_at_5' in floors",
        ),
        ("version: 1\nthresholds: {}\n", r"p.yaml:2: unknown setting 'thresholds'"),
        ("floors:\n  accuracy: high\n", r"p.yaml:2: floors.accuracy must be a number, not 'high'"),
        ("significance: 1.5\n", r"p.yaml:1: significance must be between 0 and 1"),
        ("significance: 0\n", r"p.yaml:1: significance must be between 0 and 1"),
        ("bootstrap: 10\n", r"p.yaml:1: bootstrap must be a whole number of at least 100"),
        (
            "relative:\n  accuracy: {max_fall: 0.1}\n",
            r"p.yaml:2: unknown option 'max_fall' in relative.accuracy",
        ),
        (
            "relative:\n  per_class_f1: {max_drop: 0.1}\n",
            r"p.yaml:2: unknown metric 'per_class_f1' in relative",
        ),
        ("on_missing_champion: maybe\n", r"p.yaml:1: on_missing_champion must be one of fail, pass"),
        ("require_improvement: 'yes please'\n", r"p.yaml:1: require_improvement must be true or false"),
        ("floors: [accuracy]\n", r"p.yaml:1: floors must be a mapping"),
        ("floors:\n  accuracy: 0.9\n  accuracy: 0.8\n", r"p.yaml:3: 'accuracy' appears twice in floors"),
        ("version: 2\n", r"p.yaml:1: only policy version 1 exists"),
        ("floors:\n  accuracy: [0.9\n", r"p.yaml:\d+: not valid YAML"),
        ("ceilings:\n  ece: -0.1\n", r"p.yaml:2: ceilings.ece must not be negative"),
        ("", r"p.yaml:1: the policy is empty"),
    ],
)
def test_malformed_policies_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        parse_policy(text, source="p.yaml")
    assert caught.value.code == "policy_invalid"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")
    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"\xff\xfe\x00floors")
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load_policy(binary)


def test_both_halves_of_a_policy_file_are_checked_with_their_line(tmp_path: Path) -> None:
    from deskpilot.rollout.rules import RolloutRules, parse_rollout_rules
    from deskpilot.workflows.build import load_policies

    good = tmp_path / "good.yaml"
    good.write_text("significance: 0.01\nrollout:\n  window_s: 30\n  ramp: [10, 50]\n")
    policies = load_policies(good)
    assert policies.gate.significance == 0.01
    assert policies.rollout == RolloutRules(window_s=30.0, ramp=(10.0, 50.0))
    assert parse_rollout_rules("significance: 0.01\n", source="p.yaml") == RolloutRules()

    bad_rollout = tmp_path / "bad_rollout.yaml"
    bad_rollout.write_text("significance: 0.01\nrollout:\n  ramp: [50, 10]\n")
    with pytest.raises(PolicyError, match=r"bad_rollout.yaml:3: rollout.ramp must be increasing"):
        load_policies(bad_rollout)
    bad_gate = tmp_path / "bad_gate.yaml"
    bad_gate.write_text("rollout:\n  window_s: 30\nfloors:\n  recall_at_5: 0.5\n")
    with pytest.raises(PolicyError, match=r"bad_gate.yaml:4: unknown metric 'recall_at_5'"):
        load_policies(bad_gate)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("rollout:\n  window: 30\n")
    with pytest.raises(PolicyError, match=r"unknown.yaml:2"):
        load_policies(unknown)


def test_the_rollout_section_says_whether_a_retrain_from_feedback_goes_to_shadow_by_itself() -> None:
    from deskpilot.rollout.rules import load_rollout_rules, parse_rollout_rules

    assert load_rollout_rules().retrain_to_shadow is True  # the packaged policy
    off = parse_rollout_rules("rollout:\n  retrain_to_shadow: false\n", source="p.yaml")
    assert off.retrain_to_shadow is False
    with pytest.raises(PolicyError, match=r"p.yaml:2"):
        parse_rollout_rules("rollout:\n  retrain_to_shadow: maybe\n", source="p.yaml")
