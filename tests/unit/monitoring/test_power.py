"""Power: realistic shifts are caught by the signals that should see them, after the run's FDR cut.

Each scenario is one window of 500 tickets; every signal is computed and fired as the run does
(Benjamini–Hochberg at 1 % across the window's tests, interval signals on their own interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deskpilot.monitoring.multiple import apply_fdr
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
from deskpilot.monitoring.types import Signal, SignalName, Window
from tests.unit.monitoring.synthetic import Desk, lower_truncated, skewed_prior, wrapper

S = SignalName


def all_signals(desk: Desk, window: Window) -> dict[SignalName, Signal]:
    profile = desk.profile
    shift = estimate_label_shift(profile, window.intents)
    label_shift = label_shift_signal(profile, window, estimate=shift)
    signals = [
        intent_histogram_signal(profile, window),
        confidence_signal(profile, window),
        margin_signal(profile, window),
        auto_route_rate_signal(profile, window),
        domain_classifier_signal(profile, window),
        vocabulary_signal(profile, window),
        text_length_signal(profile, window),
        language_signal(profile, window),
        embedding_signal(profile, desk.projected(window), permutations=200),
        label_shift,
        accuracy_feedback_signal(profile, window),
        accuracy_estimate_signal(profile, window, label_shift=label_shift, shift=shift),
        audit_accuracy_signal(profile, window),
    ]
    return {signal.name: signal for signal in apply_fdr(signals, alpha=0.01)}


def _mix(desk: Desk) -> dict[str, Any]:
    return {"prior": skewed_prior(desk.world)}


SCENARIOS: dict[str, tuple[Callable[[Desk], dict[str, Any]], set[SignalName], set[SignalName]]] = {
    # name: (how the window is drawn, signals that must fire, signals that must not)
    "template wrapper": (
        lambda desk: {"transform": wrapper},
        {S.DOMAIN_CLASSIFIER, S.TEXT_LENGTH, S.VOCABULARY, S.EMBEDDING_MMD, S.CONFIDENCE},
        {S.LABEL_SHIFT, S.INTENT_HISTOGRAM},
    ),
    "lower-cased, cut to 30 characters": (
        lambda desk: {"transform": lower_truncated},
        {S.DOMAIN_CLASSIFIER, S.TEXT_LENGTH, S.CONFIDENCE, S.AUTO_ROUTE_RATE, S.ACCURACY_ESTIMATE},
        {S.LABEL_SHIFT},
    ),
    "a new intent (20 % of tickets)": (
        lambda desk: {"new_topic_share": 0.2},
        {S.VOCABULARY, S.DOMAIN_CLASSIFIER, S.CONFIDENCE, S.EMBEDDING_MMD, S.ACCURACY_FEEDBACK},
        {S.TEXT_LENGTH, S.LANGUAGE},
    ),
    "shifted intent mix": (
        _mix,
        {S.LABEL_SHIFT, S.INTENT_HISTOGRAM, S.DOMAIN_CLASSIFIER},
        {S.VOCABULARY, S.TEXT_LENGTH, S.LANGUAGE, S.ACCURACY_ESTIMATE, S.ACCURACY_FEEDBACK},
    ),
    "a new market (30 % Spanish)": (
        lambda desk: {"spanish_share": 0.3},
        {S.LANGUAGE, S.VOCABULARY, S.DOMAIN_CLASSIFIER},
        {S.LABEL_SHIFT},
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_shift_fires_the_signals_that_should_see_it(desk: Desk, scenario: str) -> None:
    draw, must, must_not = SCENARIOS[scenario]
    signals = all_signals(desk, desk.draw(500, seed=7, **draw(desk)))
    fired = {name for name, signal in signals.items() if signal.fired}
    assert must <= fired, f"missing {must - fired}"
    assert not (must_not & fired), f"unexpected {must_not & fired}"


def test_no_signal_fires_on_an_undrifted_window(desk: Desk) -> None:
    signals = all_signals(desk, desk.draw(500, seed=8))
    assert not [name for name, signal in signals.items() if signal.fired]


def test_alerts_name_what_changed(desk: Desk) -> None:
    wrapped = all_signals(desk, desk.draw(500, seed=9, transform=wrapper))
    window_terms = {row["term"] for row in wrapped[S.DOMAIN_CLASSIFIER].detail["window_terms"]}
    assert window_terms & {"sent", "phone", "reply", "above", "line", "sent from", "reply above"}
    new_topic = all_signals(desk, desk.draw(500, seed=9, new_topic_share=0.2))
    new_terms = {row["term"] for row in new_topic[S.VOCABULARY].detail["new_terms"]}
    assert len(new_terms & set(desk.world.new_topic)) >= 5
    mixed = all_signals(desk, desk.draw(500, seed=9, **_mix(desk)))
    top = {row["intent"] for row in mixed[S.LABEL_SHIFT].detail["moved"][:3]}
    assert top == {"intent_15", "intent_16", "intent_17"}
