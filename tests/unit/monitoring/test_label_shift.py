"""BBSE: the intent mix of a window is recovered from predictions alone, within its intervals."""

from __future__ import annotations

import numpy as np
import pytest

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.label_shift import (
    estimate_label_shift,
    label_shift_signal,
    label_shift_weights,
    shift_band,
    solve_weights,
)
from tests.unit.monitoring.synthetic import Desk, profile_with_validation, skewed_prior


def test_exact_confusion_and_shares_give_exact_weights() -> None:
    recall = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.1, 0.9]])
    reference = np.array([0.5, 0.3, 0.2])
    target = np.array([0.2, 0.3, 0.5])
    joint = reference[:, None] * recall
    weights = solve_weights(joint, target @ recall, ridge=0.0)
    assert weights == pytest.approx(target / reference, abs=1e-9)
    shrunk = solve_weights(joint, target @ recall, ridge=0.5) * reference
    shrunk /= shrunk.sum()
    assert np.abs(shrunk - reference).sum() < np.abs(target - reference).sum()  # pulled towards no shift


def test_bbse_recovers_a_known_mix_within_its_intervals(desk: Desk) -> None:
    """The intervals are as good as the validation confusion rows: they resample the observed cells, so
    a confusion that a rare intent's few rows happen not to show has no variance. A 6 000-row validation
    profile keeps that unlikely: its simultaneous band covered every intent in 37 of 40 simulated windows
    (95 % nominal)."""
    profile = profile_with_validation(desk, 6_000, seed=77)
    prior = skewed_prior(desk.world)
    window = desk.draw(3_000, seed=31, prior=prior)
    shift = estimate_label_shift(profile, window.intents, seed=1)
    order = [desk.world.intents.index(name) for name in shift.classes]
    true_target, true_reference = prior[order], desk.world.prior[order]
    band = shift_band(shift)
    inside = np.abs(shift.target_prior - true_target) <= band.target_half_width
    assert inside.all(), np.nonzero(~inside)
    assert np.abs(shift.target_prior - true_target).max() < 0.03
    true_distance = 0.5 * np.abs(true_target - true_reference).sum()
    assert band.lower <= true_distance <= band.upper
    assert band.lower > 0.3  # true distance 0.5: the bound is informative, not just valid
    signal = label_shift_signal(profile, window, estimate=shift)
    assert signal.fired
    assert signal.statistic == pytest.approx(true_distance, abs=0.05)


def test_weights_helper_names_the_boosted_intents(desk: Desk) -> None:
    window = desk.draw(3_000, seed=32, prior=skewed_prior(desk.world))
    weights = label_shift_weights(desk.profile, window.intents)
    assert set(weights) == set(desk.profile.classes)
    top = sorted(weights, key=weights.__getitem__, reverse=True)[:3]
    assert set(top) == {"intent_15", "intent_16", "intent_17"}
    assert all(weights[name] > 3 for name in top)


def test_no_shift_gives_a_zero_lower_bound(desk: Desk) -> None:
    window = desk.draw(500, seed=33)
    signal = label_shift_signal(desk.profile, window)
    assert signal.interval is not None
    assert signal.interval[0] < 0.02
    assert not signal.fired
    # the plug-in distance sits at its noise floor, which the detail reports
    assert signal.statistic == pytest.approx(signal.detail["noise_floor"], abs=0.05)


def test_intents_unknown_to_the_model_are_left_out_and_counted(desk: Desk) -> None:
    window = desk.draw(400, seed=34)
    intents = window.intents + ["retired_intent"] * 50
    shift = estimate_label_shift(desk.profile, intents, bootstrap=20)
    assert shift.n_unknown == 50
    assert shift.n_window == 400


def test_skips_without_a_confusion_matrix(desk: Desk) -> None:
    size = len(desk.profile.classes)
    empty = ReferenceProfile.from_dict({**desk.profile.to_dict(), "confusion": [[0] * size] * size})
    assert label_shift_signal(empty, desk.draw(300, seed=35)).skipped is not None
