"""False alarms: windows drawn fresh from the reference world must rarely look drifted.

The profile is one fixed sample, as in production, so these are false-alarm rates given that reference
(they can exceed the nominal level a little when the reference sample happens to be unusual); the bound
asserted is the one an operator cares about: at most about one window in ten flagged at the 1 % level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.domain import domain_classifier_signal
from deskpilot.monitoring.signals.embedding import embedding_signal
from deskpilot.monitoring.signals.label_shift import estimate_label_shift, label_shift_signal
from deskpilot.monitoring.signals.prediction import (
    auto_route_rate_signal,
    confidence_signal,
    intent_histogram_signal,
    margin_signal,
)
from deskpilot.monitoring.signals.quality import (
    accuracy_estimate_signal,
    accuracy_feedback_signal,
    audit_accuracy_signal,
)
from deskpilot.monitoring.signals.text import language_signal, text_length_signal, vocabulary_signal
from deskpilot.monitoring.types import Signal, Window
from tests.unit.monitoring.synthetic import Desk

WINDOWS = 50
WINDOW_SIZE = 500
ALPHA = 0.01
MAX_FIRE_RATE = 0.1
SignalFunction = Callable[[ReferenceProfile, Window], Signal]


@pytest.fixture(scope="module")
def null_windows(desk: Desk) -> list[Window]:
    return [desk.draw(WINDOW_SIZE, seed=1_000 + i) for i in range(WINDOWS)]


def _assert_rarely_small(p_values: list[float]) -> None:
    p = np.asarray(p_values)
    assert np.mean(p <= ALPHA) <= MAX_FIRE_RATE, np.sort(p)[:8]
    assert np.median(p) >= 0.2  # p-values spread over [0, 1], not piled near 0


@pytest.mark.parametrize(
    "signal",
    [
        intent_histogram_signal,
        confidence_signal,
        margin_signal,
        auto_route_rate_signal,
        vocabulary_signal,
        text_length_signal,
        language_signal,
    ],
)
def test_tests_rarely_fire_without_drift(
    desk: Desk, null_windows: list[Window], signal: SignalFunction
) -> None:
    results = [signal(desk.profile, window) for window in null_windows]
    assert all(r.skipped is None and r.p_value is not None for r in results)
    _assert_rarely_small([float(r.p_value) for r in results if r.p_value is not None])


def test_interval_signals_rarely_fire_without_drift(desk: Desk, null_windows: list[Window]) -> None:
    fired: dict[str, list[bool]] = {}
    for window in null_windows:
        shift = estimate_label_shift(desk.profile, window.intents)
        label_shift = label_shift_signal(desk.profile, window, estimate=shift)
        for signal in (
            label_shift,
            accuracy_estimate_signal(desk.profile, window, label_shift=label_shift, shift=shift),
            accuracy_feedback_signal(desk.profile, window),
            audit_accuracy_signal(desk.profile, window),
        ):
            if signal.skipped is None:
                fired.setdefault(signal.name, []).append(signal.fired)
    assert len(fired) == 4
    for name, decisions in fired.items():
        assert len(decisions) >= WINDOWS * 0.8, name
        assert np.mean(decisions) <= MAX_FIRE_RATE, name


def test_domain_classifier_rarely_fires_without_drift(desk: Desk, null_windows: list[Window]) -> None:
    # a 600-text reference sample keeps 25 fits quick; the test's validity does not depend on the sizes
    profile = dataclasses.replace(desk.profile, sample_texts=desk.profile.sample_texts[:600])
    results = [
        domain_classifier_signal(profile, window, seed=i) for i, window in enumerate(null_windows[:25])
    ]
    assert all(abs(r.statistic - 0.5) < 0.1 for r in results)
    _assert_rarely_small([float(r.p_value) for r in results if r.p_value is not None])


def test_embedding_mmd_rarely_fires_without_drift(desk: Desk, null_windows: list[Window]) -> None:
    # 300 points a side keep 25 kernel tests quick; the permutation null does not depend on the sizes
    results = [
        embedding_signal(desk.profile, desk.projected(window), max_points=300, permutations=200, seed=i)
        for i, window in enumerate(null_windows[:25])
    ]
    _assert_rarely_small([float(r.p_value) for r in results if r.p_value is not None])


def test_domain_classifier_is_not_fooled_by_repeated_messages(desk: Desk, null_windows: list[Window]) -> None:
    """Real traffic repeats itself. Windows drawn with replacement hold many equal texts; split across
    folds, each copy was learned as "window" in one and scored in the other: 12 of 100 clean windows of
    the incident drill fired before equal texts were kept in one fold (1 of 60 after, not this signal)."""
    profile = dataclasses.replace(desk.profile, sample_texts=desk.profile.sample_texts[:600])
    rng = np.random.default_rng(7)
    repeated = []
    for window in null_windows[:25]:
        # a fifth of the decisions repeat another message of the window, as a stream resampled with
        # replacement from a pool a few times its size does
        picks = np.r_[np.arange(400), rng.integers(0, 400, size=len(window) - 400)]
        repeated.append(dataclasses.replace(window, texts=[window.texts[i] for i in picks]))
    results = [domain_classifier_signal(profile, window, seed=i) for i, window in enumerate(repeated)]
    p = np.asarray([float(r.p_value) for r in results if r.p_value is not None])
    # without the grouping 24 of these 25 windows fired at 1%; repeats still tilt p a little low
    assert np.mean(p <= ALPHA) <= MAX_FIRE_RATE, np.sort(p)[:8]
    assert np.median(p) >= 0.1
