"""Signals skip, and never fire, when the window is under their minimum or the profile lacks their data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import MIN_WINDOW
from deskpilot.monitoring.signals.domain import domain_classifier_signal
from deskpilot.monitoring.signals.embedding import embedding_signal
from deskpilot.monitoring.signals.label_shift import label_shift_signal
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
from deskpilot.monitoring.types import Signal, SignalName, Window
from tests.unit.monitoring.synthetic import Desk

FUNCTIONS: list[Callable[[ReferenceProfile, Window], Signal]] = [
    intent_histogram_signal,
    confidence_signal,
    margin_signal,
    auto_route_rate_signal,
    domain_classifier_signal,
    vocabulary_signal,
    text_length_signal,
    language_signal,
    label_shift_signal,
    accuracy_feedback_signal,
    accuracy_estimate_signal,
    audit_accuracy_signal,
]


def test_every_signal_has_a_minimum() -> None:
    assert set(MIN_WINDOW) == set(SignalName)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_tiny_window_is_skipped(desk: Desk, function: Callable[[ReferenceProfile, Window], Signal]) -> None:
    signal = function(desk.profile, desk.draw(15, seed=40))
    assert signal.skipped is not None
    assert not signal.fired
    assert signal.p_value is None
    assert signal.seconds >= 0


def test_a_window_at_the_minimum_is_computed(desk: Desk) -> None:
    window = desk.draw(MIN_WINDOW[SignalName.CONFIDENCE], seed=41)
    assert confidence_signal(desk.profile, window).skipped is None


def test_embedding_needs_a_profile_embedding_and_window_embeddings(desk: Desk) -> None:
    window = desk.draw(200, seed=42)
    projected = desk.projected(window)
    bare = dataclasses.replace(desk.profile, embedding=None)
    assert embedding_signal(bare, projected).skipped is not None
    assert embedding_signal(desk.profile, None).skipped is not None
    assert embedding_signal(desk.profile, projected[:, :5]).skipped is not None
    assert embedding_signal(desk.profile, projected, permutations=50).skipped is None


def test_vocabulary_needs_the_unseen_baseline(desk: Desk) -> None:
    older = dataclasses.replace(desk.profile, unseen_rate=None, unseen_rate_error=None)
    assert vocabulary_signal(older, desk.draw(200, seed=43)).skipped is not None


def test_no_auto_route_skips_the_auto_signals(desk: Desk) -> None:
    manual = dataclasses.replace(desk.profile, routing_threshold=None, auto_accuracy=None)
    window = desk.draw(200, seed=44)
    assert auto_route_rate_signal(manual, window).skipped is not None
    assert audit_accuracy_signal(manual, window).skipped is not None
