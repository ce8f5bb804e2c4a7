"""Gate rules on hand-built outcomes: floors, ceilings, skips, relative significance, missing champion."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deskpilot.evaluation.evaluate import RowOutcomes
from deskpilot.evaluation.gate import ComparedRows, decide
from deskpilot.evaluation.policy import parse_policy


def fake_evaluation(correct: np.ndarray, measured: dict[str, float | None], uri: str) -> Any:
    """Just what the gate reads: per-row outcomes, measured values and the model's identity."""
    n = correct.size
    truth = np.array([f"l{i % 4}" for i in range(n)], dtype=object)
    predicted = np.where(correct, truth, np.array([f"l{(i + 1) % 4}" for i in range(n)], dtype=object))
    rows = RowOutcomes(
        truth=truth,
        predicted=predicted,
        confidence=np.where(correct, 0.9, 0.6),
        auto=correct.copy(),
        known=np.ones(n, dtype=bool),
    )
    return SimpleNamespace(rows=rows, model={"uri": uri}, measured=measured.get)


POLICY = """\
floors:
  accuracy: 0.8
  behavioral_mft: 0.9
ceilings:
  latency_p99_ms: 100
relative:
  accuracy: {max_drop: 0.01}
"""


def test_floors_ceilings_and_unmeasured_metrics() -> None:
    challenger = fake_evaluation(
        np.ones(100, bool), {"accuracy": 0.85, "latency_p99_ms": 140.0, "behavioral_mft": None}, "models:/m/2"
    )
    decision = decide(challenger, None, parse_policy(POLICY, source="p.yaml"))
    by_metric = {(r.kind, r.metric): r for r in decision.rules}
    assert by_metric[("floor", "accuracy")].status == "pass"
    assert by_metric[("floor", "behavioral_mft")].status == "skipped"
    latency = by_metric[("ceiling", "latency_p99_ms")]
    assert latency.status == "fail"
    assert latency.detail == "140.0000 is above 100"
    assert latency.line == 5
    assert by_metric[("relative", "accuracy")].detail == "no champion; the policy says pass"
    assert not decision.passed
    assert "ceiling latency_p99_ms" in decision.reason()
    assert "| ceiling | latency_p99_ms | 140.0000 | ≤ 100 | FAIL |" in decision.table()


def test_missing_champion_follows_the_policy() -> None:
    challenger = fake_evaluation(np.ones(50, bool), {"accuracy": 0.9}, "models:/m/1")
    strict = parse_policy("on_missing_champion: fail\nrelative:\n  accuracy: {}\n", source="p")
    decision = decide(challenger, None, strict)
    assert not decision.passed
    assert decision.rules[0].status == "fail"
    assert decision.to_dict()["champion"] is None


def test_identical_models_are_not_significantly_different() -> None:
    correct = np.random.default_rng(0).random(2000) < 0.9
    champion = fake_evaluation(correct, {}, "models:/m/1")
    challenger = fake_evaluation(correct.copy(), {}, "models:/m/2")
    policy = parse_policy("relative:\n  accuracy: {max_drop: 0.0}\n  macro_f1: {}\n  ece: {}\n", source="p")
    decision = decide(challenger, champion, policy)
    assert decision.passed
    assert decision.compared_rows == 2000
    assert all(r.status == "pass" and r.measured == 0.0 for r in decision.rules)
    assert "not significantly worse" in decision.rules[0].detail
    assert "McNemar b=0 c=0 p=1" in decision.rules[0].detail


def test_a_clearly_worse_challenger_fails_and_a_small_drop_is_tolerated() -> None:
    rng = np.random.default_rng(1)
    champion_correct = rng.random(3000) < 0.92
    worse = champion_correct & (rng.random(3000) < 0.85)  # loses ~14 points, never gains
    slightly = champion_correct.copy()
    slightly[np.flatnonzero(slightly)[:6]] = False  # 0.2 points worse
    champion = fake_evaluation(champion_correct, {}, "models:/m/1")
    policy = parse_policy("relative:\n  accuracy: {max_drop: 0.005}\n", source="p")
    failed = decide(fake_evaluation(worse, {}, "models:/m/2"), champion, policy)
    assert not failed.passed
    rule = failed.rules[0]
    assert rule.measured == pytest.approx(worse.mean() - champion_correct.mean())
    assert rule.detail.startswith("significantly worse")
    tolerated = decide(fake_evaluation(slightly, {}, "models:/m/3"), champion, policy)
    assert tolerated.passed


def test_improvement_rule_needs_a_significant_gain() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(2000) < 0.8
    better = base | (rng.random(2000) < 0.5)
    policy = parse_policy("require_improvement: true\n", source="p")
    champion = fake_evaluation(base, {}, "models:/m/1")
    assert decide(fake_evaluation(better, {}, "models:/m/2"), champion, policy).passed
    same = decide(fake_evaluation(base.copy(), {}, "models:/m/3"), champion, policy)
    assert not same.passed
    assert same.rules[-1].detail.startswith("not significantly better")


def test_champion_must_be_evaluated_on_the_same_rows() -> None:
    champion = fake_evaluation(np.ones(10, bool), {}, "models:/m/1")
    challenger = fake_evaluation(np.ones(12, bool), {}, "models:/m/2")
    with pytest.raises(ValueError, match="same rows"):
        decide(challenger, champion, parse_policy("relative:\n  accuracy: {}\n", source="p"))


def test_a_forced_comparison_reports_its_leakage_in_the_reason_and_the_record() -> None:
    correct = np.random.default_rng(1).random(400) < 0.9
    champion = fake_evaluation(correct, {}, "models:/m/1")
    challenger = fake_evaluation(correct.copy(), {}, "models:/m/2")
    policy = parse_policy("relative:\n  accuracy: {}\n", source="p")
    forced = ComparedRows(400, 400, champion_seen=310, challenger_seen=0, forced=True, source="f.csv")
    decision = decide(challenger, champion, policy, rows=forced)
    assert decision.passed
    assert decision.reason() == (
        "every rule holds (forced comparison, leakage: the champion trained on 310 of the 400 compared rows)"
    )
    recorded = decision.to_dict()["rows"]
    assert (recorded["left_out"], recorded["champion_seen"], recorded["forced"]) == (0, 310, True)
    assert "leakage" in recorded["leakage"]
    clean = ComparedRows(1000, 400, champion_seen=600, challenger_seen=0, source="f.csv")
    assert decide(challenger, champion, policy, rows=clean).reason() == "every rule holds"
    assert clean.describe() == (
        "400 of 1,000 rows (f.csv); 600 left out because a model trained on them (the champion on 600)"
    )
    unknown = ComparedRows(400, 400, champion_seen=None, challenger_seen=0)
    assert (
        "which rows the champion trained on is unknown"
        in decide(challenger, champion, policy, rows=unknown).reason()
    )


def test_a_champion_that_trained_on_every_offered_row_fails_the_relative_rules() -> None:
    challenger = fake_evaluation(np.ones(100, bool), {"accuracy": 0.95}, "models:/m/2")
    policy = parse_policy("relative:\n  accuracy: {}\n", source="p")
    rows = ComparedRows(100, 0, champion_seen=100, challenger_seen=0)
    decision = decide(challenger, None, policy, rows=rows, unmatched_champion={"uri": "models:/m/1"})
    assert not decision.passed
    assert decision.champion == {"uri": "models:/m/1"}
    assert "no rows that neither model trained on" in decision.rules[0].detail
