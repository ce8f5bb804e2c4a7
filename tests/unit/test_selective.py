"""Threshold selection and the coverage–precision curve, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from deskpilot.evaluation.selective import coverage_curve, pick_threshold


def test_curve_by_hand() -> None:
    confidence = np.array([0.9, 0.5, 0.8, 0.8, 0.3])
    correct = np.array([True, False, True, False, True])
    curve = coverage_curve(confidence, correct)
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.5, 0.3]
    assert curve.coverage.tolist() == [0.2, 0.6, 0.8, 1.0]
    assert curve.precision.tolist() == pytest.approx([1.0, 2 / 3, 2 / 4, 3 / 5])


def test_picks_the_largest_coverage_meeting_the_target() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, True, False, True, False])
    chosen = pick_threshold(confidence, correct, target_precision=0.8)
    # top-4: 4/4; top-5: 4/5 = 0.8 (meets); top-6: 5/6 ≈ 0.83 (meets, larger); top-7: 5/7 ≈ 0.71
    assert chosen.threshold == 0.7
    assert chosen.coverage == pytest.approx(6 / 7)
    assert chosen.precision == pytest.approx(5 / 6)


def test_ties_are_routed_together() -> None:
    confidence = np.array([0.9, 0.9, 0.9, 0.5])
    correct = np.array([True, True, False, True])
    chosen = pick_threshold(confidence, correct, target_precision=0.9)
    assert chosen.threshold is None
    assert chosen.coverage == 0.0


def test_unreachable_target_routes_nothing() -> None:
    chosen = pick_threshold(np.array([0.6, 0.4]), np.array([False, False]), target_precision=0.97)
    assert chosen.threshold is None
    assert chosen.precision is None


def test_perfect_model_routes_everything() -> None:
    chosen = pick_threshold(np.array([0.6, 0.4, 0.2]), np.array([True, True, True]))
    assert chosen.threshold == 0.2
    assert chosen.coverage == 1.0


@pytest.mark.parametrize("target", [0.0, 1.5])
def test_target_out_of_range(target: float) -> None:
    with pytest.raises(ValueError, match="target precision"):
        pick_threshold(np.array([0.5]), np.array([True]), target_precision=target)
