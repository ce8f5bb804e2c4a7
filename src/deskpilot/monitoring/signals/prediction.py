"""Prediction drift: what the model answers now against what it answered on its validation split.

These need no text and no labels, so they are the cheapest and the first to move when inputs change.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import ks_signal, skipped, timed, too_small
from deskpilot.monitoring.signals.stats import (
    homogeneity_test,
    js_distance,
    newcombe_difference,
    top_movers,
    two_proportion_p,
)
from deskpilot.monitoring.types import Signal, SignalKind, SignalName, Window

UNSEEN_IN_REFERENCE = "__unseen_in_reference__"  # an intent of the model it never predicted on validation
UNKNOWN_INTENT = "__unknown_intent__"  # an intent the profile's model does not have (another version's)
INTERVAL_LEVEL = 0.95


def intent_cells(profile: ReferenceProfile, intents: list[str]) -> tuple[Counter[str], Counter[str]]:
    """Reference and window intent counts on a shared set of cells.

    Intents the model never predicted on validation share one cell, and intents unknown to the model
    another: both have no reference mass, so each alone would break the test, but together they are
    exactly what a new topic or a mixed-version window looks like.
    """
    known = set(profile.classes)
    reference = Counter({name: count for name, count in profile.intent_counts.items() if count > 0})
    window: Counter[str] = Counter()
    for intent in intents:
        if intent in reference:
            window[intent] += 1
        elif intent in known:
            window[UNSEEN_IN_REFERENCE] += 1
        else:
            window[UNKNOWN_INTENT] += 1
    return reference, window


@timed
def intent_histogram_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Chi-square homogeneity test of the predicted-intent histogram; statistic: Jensen–Shannon distance."""
    name, kind = SignalName.INTENT_HISTOGRAM, SignalKind.PREDICTION
    if small := too_small(name, kind, len(window), profile.n_validation):
        return small
    reference, observed = intent_cells(profile, window.intents)
    test = homogeneity_test(reference, observed)
    return Signal(
        name=name,
        kind=kind,
        statistic=js_distance(reference, observed),
        p_value=test.p_value,
        n_window=len(window),
        n_reference=profile.n_validation,
        detail={
            "chi2": round(test.chi2, 3),
            "dof": test.dof,
            "pooled_intents": len(test.pooled),
            "unseen_in_reference": observed[UNSEEN_IN_REFERENCE],
            "unknown_intent": observed[UNKNOWN_INTENT],
            "moved": top_movers(reference, observed),
        },
    )


@timed
def confidence_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Two-sample KS test of the max calibrated confidence (falls first when inputs leave the training
    distribution)."""
    return ks_signal(
        SignalName.CONFIDENCE,
        SignalKind.PREDICTION,
        profile.confidence_array,
        np.asarray(window.confidence, float),
    )


@timed
def margin_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Two-sample KS test of the top-1 minus top-2 margin (moves when two intents start to be confused)."""
    return ks_signal(
        SignalName.MARGIN, SignalKind.PREDICTION, profile.margin_array, np.asarray(window.margin, float)
    )


@timed
def auto_route_rate_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Two-proportion z-test of the auto-route rate; statistic: window minus reference, with a Newcombe
    interval (the rate is what operators budget human staffing by)."""
    name, kind = SignalName.AUTO_ROUTE_RATE, SignalKind.PREDICTION
    if profile.routing_threshold is None:
        return skipped(name, kind, "the model routes nothing auto", len(window), profile.n_validation)
    if small := too_small(name, kind, len(window), profile.n_validation):
        return small
    n_ref = profile.n_validation
    k_ref = round(profile.auto_rate * n_ref)
    n_win = len(window)
    k_win = int(np.asarray(window.auto, dtype=bool).sum())
    difference = k_win / n_win - k_ref / n_ref
    error = np.sqrt(
        k_win / n_win * (1 - k_win / n_win) / n_win + profile.auto_rate * (1 - profile.auto_rate) / n_ref
    )
    return Signal(
        name=name,
        kind=kind,
        statistic=float(difference),
        p_value=two_proportion_p(k_win, n_win, k_ref, n_ref),
        n_window=n_win,
        n_reference=n_ref,
        interval=newcombe_difference(k_win, n_win, k_ref, n_ref, INTERVAL_LEVEL),
        sampling_error=float(error),
        detail={"window_rate": round(k_win / n_win, 4), "reference_rate": round(profile.auto_rate, 4)},
    )
