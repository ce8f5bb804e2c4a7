"""Input drift on cheap text statistics: unseen vocabulary, length, language.

Each is narrower than the domain classifier but names its cause outright (new words, a truncating
channel, a new market), and each costs one pass over the window's texts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from scipy import stats

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import skipped, timed, too_small
from deskpilot.monitoring.signals.stats import homogeneity_test, js_distance, top_movers, z_value
from deskpilot.monitoring.textstats import guess_language, ratio_with_error, tokenize, unseen_counts
from deskpilot.monitoring.types import Signal, SignalKind, SignalName, Window

NEW_TERMS = 10
NEW_TERM_MIN_TEXTS = 3  # a new term must appear in at least this many window texts
NEW_TERM_LIFT = 5.0  # and be this many times more frequent (per text) than in the vocabulary texts
INTERVAL_LEVEL = 0.95


def new_frequent_terms(
    profile: ReferenceProfile, tokenized: list[list[str]], top: int = NEW_TERMS
) -> list[dict[str, Any]]:
    """Tokens frequent in the window and absent or rare in the reference, most frequent first.

    Document frequencies, so one ticket repeating a word counts once; the reference share is smoothed
    by half a document so absent tokens get a finite lift.
    """
    frequency: Counter[str] = Counter()
    for tokens in tokenized:
        frequency.update(set(tokens))
    n_window, n_reference = max(len(tokenized), 1), max(profile.vocabulary_texts, 1)
    rows: list[dict[str, Any]] = []
    for token, count in frequency.items():
        if count < NEW_TERM_MIN_TEXTS:
            continue
        reference = profile.vocabulary.get(token, 0)
        lift = (count / n_window) / ((reference + 0.5) / (n_reference + 1))
        if lift >= NEW_TERM_LIFT:
            rows.append(
                {
                    "term": token,
                    "window_share": round(count / n_window, 4),
                    "reference_share": round(reference / n_reference, 5),
                }
            )
    rows.sort(key=lambda row: (-row["window_share"], row["term"]))
    return rows[:top]


@timed
def vocabulary_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """One-sided z-test that the window's unseen-token rate exceeds the reference's held-out rate.

    ``statistic`` is the excess (window rate minus reference rate). Both rates carry a standard error over
    texts (see :func:`ratio_with_error`); a falling unseen rate is not a risk, so the test is one-sided.
    """
    name, kind = SignalName.VOCABULARY, SignalKind.INPUT
    if profile.unseen_rate is None or profile.unseen_rate_error is None:
        return skipped(name, kind, "profile has no unseen-token baseline", len(window))
    if small := too_small(name, kind, len(window), profile.vocabulary_texts):
        return small
    tokenized = [tokenize(text) for text in window.texts]
    rate, error = ratio_with_error(*unseen_counts(tokenized, set(profile.vocabulary)))
    excess = rate - profile.unseen_rate
    combined = float(np.hypot(error, profile.unseen_rate_error))
    if not np.isfinite(combined) or combined <= 0:
        p_value = 1.0 if excess <= 0 else 0.0
    else:
        p_value = float(stats.norm.sf(excess / combined))
    half = z_value(INTERVAL_LEVEL) * combined
    return Signal(
        name=name,
        kind=kind,
        statistic=float(excess),
        p_value=p_value,
        n_window=len(window),
        n_reference=profile.vocabulary_texts,
        interval=(float(excess - half), float(excess + half)),
        sampling_error=combined,
        detail={
            "window_rate": round(rate, 5),
            "reference_rate": round(profile.unseen_rate, 5),
            "new_terms": new_frequent_terms(profile, tokenized),
        },
    )


@timed
def text_length_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Two-sample KS test of lengths in characters (truncating channels and templates move it)."""
    name, kind = SignalName.TEXT_LENGTH, SignalKind.INPUT
    reference = np.asarray(profile.text_lengths, dtype=np.float64)
    if small := too_small(name, kind, len(window), len(reference)):
        return small
    if len(reference) == 0:
        return skipped(name, kind, "profile has no text lengths", len(window))
    lengths = np.asarray([len(text) for text in window.texts], dtype=np.float64)
    result = stats.ks_2samp(lengths, reference)
    return Signal(
        name=name,
        kind=kind,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        n_window=len(window),
        n_reference=len(reference),
        detail={
            "window_median": float(np.median(lengths)),
            "reference_median": float(np.median(reference)),
            "window_p90": float(np.quantile(lengths, 0.9)),
            "reference_p90": float(np.quantile(reference, 0.9)),
        },
    )


@timed
def language_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Chi-square homogeneity test of guessed languages; statistic: Jensen–Shannon distance."""
    name, kind = SignalName.LANGUAGE, SignalKind.INPUT
    n_reference = sum(profile.languages.values())
    if small := too_small(name, kind, len(window), n_reference):
        return small
    if n_reference == 0:
        return skipped(name, kind, "profile has no language counts", len(window))
    observed = Counter(guess_language(text) for text in window.texts)
    test = homogeneity_test(profile.languages, observed)
    return Signal(
        name=name,
        kind=kind,
        statistic=js_distance(profile.languages, observed),
        p_value=test.p_value,
        n_window=len(window),
        n_reference=n_reference,
        detail={
            "chi2": round(test.chi2, 3),
            "dof": test.dof,
            "moved": top_movers(profile.languages, observed),
        },
    )
