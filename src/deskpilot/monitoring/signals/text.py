"""Input drift on cheap text statistics: unseen vocabulary, length, language.

Each is narrower than the domain classifier but names its cause outright (new words, a truncating
channel, a new market), and each costs one pass over the window's texts. Vocabulary and language tokenize
in Python, so they read a seeded sample of at most :data:`MAX_TEXTS` texts: at a million decisions reading
every text cost them more than every other signal together, while 20,000 texts already bound a share's
sampling error by 0.35 percentage points (0.5 / sqrt(20,000)).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import ks_signal, skipped, timed, too_small
from deskpilot.monitoring.signals.stats import homogeneity_test, js_distance, top_movers, z_value
from deskpilot.monitoring.textstats import guess_language, ratio_with_error, tokenize, unseen_counts
from deskpilot.monitoring.types import Signal, SignalKind, SignalName, Window

NEW_TERMS = 10
NEW_TERM_MIN_TEXTS = 3  # a new term must appear in at least this many window texts
NEW_TERM_LIFT = 5.0  # and be this many times more frequent (per text) than in the vocabulary texts
INTERVAL_LEVEL = 0.95
MAX_TEXTS = 20_000  # texts of a window that the vocabulary and language signals tokenize


def sample_texts(texts: Sequence[str], max_texts: int, seed: int) -> list[str]:
    """All of ``texts`` or, past ``max_texts``, a seeded uniform sample of that many (in window order), so
    that a rerun of the monitor gives the same numbers."""
    if max_texts < 1:
        raise ValueError(f"max_texts must be at least 1, got {max_texts}")
    if len(texts) <= max_texts:
        return list(texts)
    rng = np.random.default_rng(seed)
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=max_texts, replace=False))]


def _population_factor(sampled: int, population: int) -> float:
    """The finite-population correction: how much of a sample's error remains about the whole window."""
    return math.sqrt(max(1.0 - sampled / population, 0.0)) if population else 0.0


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
def vocabulary_signal(
    profile: ReferenceProfile, window: Window, *, max_texts: int = MAX_TEXTS, seed: int = 0
) -> Signal:
    """One-sided z-test that the window's unseen-token rate exceeds the reference's held-out rate.

    ``statistic`` is the excess (window rate minus reference rate). Both rates carry a standard error over
    texts (see :func:`ratio_with_error`); a falling unseen rate is not a risk, so the test is one-sided.
    The window's rate is taken over at most ``max_texts`` sampled texts, so its error is the sample's;
    ``detail["sample_error"]`` is the part of it that sampling adds (0 when every text was read).
    """
    name, kind = SignalName.VOCABULARY, SignalKind.INPUT
    if profile.unseen_rate is None or profile.unseen_rate_error is None:
        return skipped(name, kind, "profile has no unseen-token baseline", len(window))
    if small := too_small(name, kind, len(window), profile.vocabulary_texts):
        return small
    texts = sample_texts(window.texts, max_texts, seed)
    tokenized = [tokenize(text) for text in texts]
    rate, error = ratio_with_error(*unseen_counts(tokenized, set(profile.vocabulary)))
    factor = _population_factor(len(texts), len(window))
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
            "sampled": len(texts),
            "sample_error": round(error * factor, 6) if factor > 0 else 0.0,
            "new_terms": new_frequent_terms(profile, tokenized),
        },
    )


@timed
def text_length_signal(profile: ReferenceProfile, window: Window) -> Signal:
    """Two-sample KS test of lengths in characters (truncating channels and templates move it)."""
    reference = np.asarray(profile.text_lengths, dtype=np.float64)
    lengths = np.asarray([len(text) for text in window.texts], dtype=np.float64)
    return ks_signal(SignalName.TEXT_LENGTH, SignalKind.INPUT, reference, lengths)


@timed
def language_signal(
    profile: ReferenceProfile, window: Window, *, max_texts: int = MAX_TEXTS, seed: int = 0
) -> Signal:
    """Chi-square homogeneity test of guessed languages; statistic: Jensen–Shannon distance.

    Counted over at most ``max_texts`` sampled texts (the test then has the sample's size);
    ``detail["sample_error"]`` is the largest standard error that sampling puts on a language's share of
    the window (0 when every text was read).
    """
    name, kind = SignalName.LANGUAGE, SignalKind.INPUT
    n_reference = sum(profile.languages.values())
    if small := too_small(name, kind, len(window), n_reference):
        return small
    if n_reference == 0:
        return skipped(name, kind, "profile has no language counts", len(window))
    texts = sample_texts(window.texts, max_texts, seed)
    observed = Counter(guess_language(text) for text in texts)
    test = homogeneity_test(profile.languages, observed)
    shares = [count / len(texts) for count in observed.values()]
    share_error = max(math.sqrt(p * (1 - p) / len(texts)) for p in shares)
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
            "sampled": len(texts),
            "sample_error": round(share_error * _population_factor(len(texts), len(window)), 6),
            "moved": top_movers(profile.languages, observed),
        },
    )
