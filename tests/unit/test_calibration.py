"""Temperature scaling recovers a known temperature and never changes the ranking."""

from __future__ import annotations

import numpy as np
import pytest

from deskpilot.models.calibration import (
    MIN_TEMPERATURE,
    apply_temperature,
    fit_temperature,
    negative_log_likelihood,
)


def test_recovers_the_temperature_of_synthetic_data() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(20_000, 5)) * 2.0
    targets = np.array([rng.choice(5, p=p) for p in apply_temperature(true_logits, 1.0)])
    overconfident = true_logits * 3.0
    fitted = fit_temperature(overconfident, targets)
    assert fitted == pytest.approx(3.0, rel=0.05)


def test_temperature_keeps_the_argmax() -> None:
    logits = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, -1.0]])
    for t in (0.1, 1.0, 7.0):
        probs = apply_temperature(logits, t)
        assert probs.argmax(axis=1).tolist() == [0, 1]
        assert probs.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_nll_by_hand() -> None:
    logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    nll = negative_log_likelihood(logits, np.array([0, 1]), 1.0)
    assert nll == pytest.approx(-(np.log(0.5) + np.log(0.1)) / 2)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="do not line up"):
        fit_temperature(np.zeros((3, 2)), np.zeros(2, dtype=int))


def test_a_validation_set_without_errors_does_not_drive_confidence_to_one() -> None:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 6, size=30)
    logits = rng.normal(size=(30, 6)) * 0.3
    logits[np.arange(30), targets] += 1.5  # every row right, with the modest margins of a small model
    fitted = fit_temperature(logits, targets)
    assert fitted > 3 * MIN_TEMPERATURE, "no errors in 30 rows is no evidence for sharpening to the bound"
    assert apply_temperature(logits, fitted).max(axis=1).min() < 0.99
    # the prior weighs one row: the same evidence forty times over sharpens further, towards the bound
    many = np.repeat(logits, 40, axis=0)
    assert fit_temperature(many, np.repeat(targets, 40)) < fitted
