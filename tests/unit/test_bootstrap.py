"""Cell bootstrap: exact point estimates, intervals that behave like a row bootstrap, paired differences."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from deskpilot.evaluation import bootstrap
from deskpilot.evaluation.bootstrap import ModelOutcome, OutcomeCells
from deskpilot.evaluation.metrics import expected_calibration_error


def synthetic(n: int, classes: int, seed: int, skill: float = 0.8) -> tuple[np.ndarray, ModelOutcome]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)
    right = rng.random(n) < skill
    predicted = np.where(right, truth, rng.integers(0, classes, n))
    confidence = np.clip(np.where(right, rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 0.9, n)), 0, 1)
    return truth, ModelOutcome(predicted, confidence, confidence >= 0.8)


def test_point_estimates_match_direct_computation() -> None:
    truth, outcome = synthetic(3000, 12, seed=1)
    cells = OutcomeCells(truth, [outcome], 12)
    point = cells.point_weights()
    correct = outcome.predicted == truth
    assert cells.metric("accuracy", point)[0] == pytest.approx(correct.mean())
    assert cells.metric("macro_f1", point)[0] == pytest.approx(
        f1_score(truth, outcome.predicted, average="macro")
    )
    assert cells.metric("ece", point)[0] == pytest.approx(
        expected_calibration_error(outcome.confidence, correct)
    )
    assert cells.metric("auto_coverage", point)[0] == pytest.approx(outcome.auto.mean())
    assert cells.metric("auto_precision", point)[0] == pytest.approx(correct[outcome.auto].mean())


def test_hand_computed_four_rows() -> None:
    # truth a a b b; predicted a b b b; confidences .9 .6 .8 .7; auto at .75: rows 0 and 2
    truth = np.array([0, 0, 1, 1])
    outcome = ModelOutcome(
        np.array([0, 1, 1, 1]), np.array([0.9, 0.6, 0.8, 0.7]), np.array([1, 0, 1, 0], bool)
    )
    cells = OutcomeCells(truth, [outcome], 2)
    point = cells.point_weights()
    assert cells.metric("accuracy", point)[0] == pytest.approx(0.75)
    # class a: P=1, R=.5, F1=2/3; class b: P=2/3, R=1, F1=.8
    assert cells.metric("macro_f1", point)[0] == pytest.approx((2 / 3 + 0.8) / 2)
    assert cells.metric("auto_coverage", point)[0] == pytest.approx(0.5)
    assert cells.metric("auto_precision", point)[0] == pytest.approx(1.0)


def test_interval_agrees_with_a_row_bootstrap() -> None:
    truth, outcome = synthetic(800, 5, seed=2)
    cells = OutcomeCells(truth, [outcome], 5)
    ours = cells.replicates(lambda w: cells.metric("accuracy", w), 4000, seed=0)
    rng = np.random.default_rng(1)
    correct = (outcome.predicted == truth).astype(float)
    naive = correct[rng.integers(0, truth.size, (4000, truth.size))].mean(axis=1)
    assert ours.mean() == pytest.approx(naive.mean(), abs=0.003)
    assert ours.std() == pytest.approx(naive.std(), rel=0.1)


def test_interval_is_seeded_contains_the_value_and_narrows_with_more_rows() -> None:
    small_truth, small = synthetic(300, 8, seed=3)
    big_truth, big = synthetic(30_000, 8, seed=3)
    small_cells = OutcomeCells(small_truth, [small], 8)
    first = small_cells.interval("macro_f1", n_boot=500, seed=7)
    assert first == small_cells.interval("macro_f1", n_boot=500, seed=7)
    assert first.low <= first.value <= first.high
    wide = first.high - first.low
    narrow = OutcomeCells(big_truth, [big], 8).interval("macro_f1", n_boot=500, seed=7)
    assert narrow.high - narrow.low < wide / 5


def test_chunked_resampling_gives_the_same_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    truth, outcome = synthetic(2000, 10, seed=4)
    cells = OutcomeCells(truth, [outcome], 10)
    whole = cells.replicates(lambda w: cells.metric("ece", w), 300, seed=5)
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 1)
    chunked = cells.replicates(lambda w: cells.metric("ece", w), 300, seed=5)
    assert chunked.shape == (300,)
    np.testing.assert_allclose(chunked, whole)


def test_paired_differences_are_zero_for_identical_models_and_signed_for_better() -> None:
    truth, outcome = synthetic(1000, 6, seed=6)
    same = OutcomeCells(truth, [outcome, outcome], 6)
    observed, samples = same.paired_differences("accuracy", n_boot=200, seed=0)
    assert observed == 0.0
    assert np.all(samples == 0.0)
    perfect = ModelOutcome(truth.copy(), np.ones(truth.size), np.ones(truth.size, bool))
    better = OutcomeCells(truth, [outcome, perfect], 6)
    observed, samples = better.paired_differences("accuracy", n_boot=200, seed=0)
    assert observed > 0.1
    assert np.all(samples > 0)
    # ECE: lower is better, so a better-calibrated challenger also shows a positive difference
    ece_observed, _ = better.paired_differences("ece", n_boot=50, seed=0)
    assert ece_observed > 0


def test_outcomes_must_cover_the_same_rows() -> None:
    truth, outcome = synthetic(10, 3, seed=0)
    with pytest.raises(ValueError, match="same rows"):
        OutcomeCells(truth[:5], [outcome], 3)
    with pytest.raises(KeyError, match="no bootstrap metric"):
        OutcomeCells(truth, [outcome], 3).metric("recall", np.ones((1, 1)))


def test_ece_interval_is_bias_corrected_to_bracket_the_estimate() -> None:
    truth, outcome = synthetic(400, 10, seed=8)
    confidence = np.where(outcome.predicted == truth, 0.95, 0.3)
    calibrated = ModelOutcome(outcome.predicted, confidence, outcome.auto)
    interval = OutcomeCells(truth, [calibrated], 10).interval("ece", n_boot=500, seed=0)
    assert interval.low <= interval.value <= interval.high
    assert interval.low >= 0.0
