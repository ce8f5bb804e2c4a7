"""Quality signals: the feedback accuracy corrects for which tickets get verdicts; the estimates and the
audit sample fire on real drops only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from deskpilot.monitoring.signals.label_shift import label_shift_signal
from deskpilot.monitoring.signals.quality import (
    accuracy_estimate_signal,
    accuracy_feedback_signal,
    audit_accuracy_signal,
)
from deskpilot.monitoring.types import Window
from tests.unit.monitoring.synthetic import OTHER, Desk, skewed_prior

AUTO_SHARE, AUTO_ACCURACY, HUMAN_ACCURACY = 0.7, 0.97, 0.70
TRUE_ACCURACY = AUTO_SHARE * AUTO_ACCURACY + (1 - AUTO_SHARE) * HUMAN_ACCURACY  # 0.889


def feedback_window(
    seed: int,
    n: int = 4_000,
    *,
    auto_accuracy: float = AUTO_ACCURACY,
    human_accuracy: float = HUMAN_ACCURACY,
    human_feedback: float = 0.6,
    audit: float = 0.05,
) -> Window:
    """Decisions whose correctness is drawn per route; verdicts on a share of human routes and on a 5 %
    random audit of auto routes, as agents give them."""
    rng = np.random.default_rng(seed)
    auto = rng.random(n) < AUTO_SHARE
    right = np.where(auto, rng.random(n) < auto_accuracy, rng.random(n) < human_accuracy)
    review = auto & (rng.random(n) < audit)
    verdict = review | (~auto & (rng.random(n) < human_feedback))
    intents = ["billing"] * n
    truth = [("billing" if r else ("refund" if i % 2 else OTHER)) for i, r in enumerate(right)]
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return Window(
        tenant="t1",
        start=now,
        end=now,
        texts=["x"] * n,
        intents=intents,
        confidence=np.full(n, 0.9),
        margin=np.full(n, 0.5),
        auto=auto,
        review_sample=review,
        correct_intent=[t if v else None for t, v in zip(truth, verdict, strict=True)],
    )


def test_stratified_feedback_accuracy_removes_the_selection_bias(desk: Desk) -> None:
    signal = accuracy_feedback_signal(desk.profile, feedback_window(seed=1))
    naive = signal.detail["naive_pooled"]
    assert naive["accuracy"] < 0.78  # dominated by the hard, human-routed tickets
    assert not naive["interval"][0] <= TRUE_ACCURACY <= naive["interval"][1]
    assert signal.interval is not None
    assert signal.interval[0] <= TRUE_ACCURACY <= signal.interval[1]
    assert signal.statistic == pytest.approx(TRUE_ACCURACY, abs=0.02)
    assert signal.detail["auto_share"] == pytest.approx(AUTO_SHARE, abs=0.02)


def test_stratified_interval_covers_the_truth_at_its_level(desk: Desk) -> None:
    covered = []
    for seed in range(100):
        signal = accuracy_feedback_signal(desk.profile, feedback_window(seed=100 + seed, n=3_000))
        assert signal.interval is not None
        covered.append(signal.interval[0] <= TRUE_ACCURACY <= signal.interval[1])
    assert np.mean(covered) >= 0.95  # 99 % intervals


def test_feedback_accuracy_fires_on_a_real_drop_and_not_without(desk: Desk) -> None:
    profile = dataclasses.replace(desk.profile, validation_accuracy=0.9)
    assert not accuracy_feedback_signal(profile, feedback_window(seed=2)).fired
    dropped = accuracy_feedback_signal(
        profile, feedback_window(seed=2, auto_accuracy=0.85, human_accuracy=0.55)
    )
    assert dropped.fired
    assert dropped.p_value is not None
    assert dropped.p_value < 0.001


def test_feedback_accuracy_needs_audit_verdicts_for_auto_routes(desk: Desk) -> None:
    signal = accuracy_feedback_signal(desk.profile, feedback_window(seed=3, audit=0.0))
    assert signal.skipped is not None
    assert "audit" in signal.skipped
    assert not signal.fired


def test_audit_sample_fires_when_auto_routes_get_worse(desk: Desk) -> None:
    profile = dataclasses.replace(desk.profile, auto_accuracy=0.97)
    fine = audit_accuracy_signal(profile, feedback_window(seed=4, audit=0.1))
    assert fine.interval is not None
    assert fine.interval[0] <= AUTO_ACCURACY <= fine.interval[1]
    assert not fine.fired
    worse = audit_accuracy_signal(profile, feedback_window(seed=4, audit=0.1, auto_accuracy=0.85))
    assert worse.fired
    assert worse.statistic == pytest.approx(0.85, abs=0.04)


def test_accuracy_estimate_switches_to_the_label_shift_correction_under_label_shift(desk: Desk) -> None:
    window = desk.draw(2_000, seed=21, prior=skewed_prior(desk.world))
    shift = label_shift_signal(desk.profile, window)
    assert shift.fired
    plain = accuracy_estimate_signal(desk.profile, window)
    informed = accuracy_estimate_signal(desk.profile, window, label_shift=shift)
    assert plain.detail["reliable"]
    assert plain.detail["estimator"] == "confidence"
    assert not informed.detail["reliable"]
    assert informed.detail["estimator"] == "label_shift_corrected"
    truth = np.mean([v == i for v, i in zip(_truth(desk, 2_000, 21), window.intents, strict=True)])
    assert informed.interval is not None
    assert informed.interval[0] - 0.01 <= truth <= informed.interval[1] + 0.01


def _truth(desk: Desk, n: int, seed: int) -> list[str]:
    """The true intents of ``desk.draw(n, seed, prior=skewed)``: same generator, same seed."""
    rng = np.random.default_rng(seed)
    return desk.world.sample(n, rng, prior=skewed_prior(desk.world))[1]


def test_accuracy_estimate_fires_when_confidence_collapses(desk: Desk) -> None:
    window = desk.draw(500, seed=22, transform=lambda text: text.lower()[:20])
    signal = accuracy_estimate_signal(desk.profile, window)
    assert signal.fired
    assert signal.detail["reliable"]
    assert signal.interval is not None
    assert signal.interval[1] < desk.profile.validation_accuracy - 0.05
