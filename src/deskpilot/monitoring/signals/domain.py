"""Input drift by a domain classifier: can a linear model tell this window's texts from the reference's?

A classifier two-sample test catches any change a bag of words and a few shape marks can see (a template
wrapper, a new topic, truncation, lower-casing) without naming the change in advance, and its weights say
what changed.

The classifier is naive Bayes on word presence, scored out of fold: its fit is two counts per feature, so a
window costs little more than reading its texts. The reference side (the profile's sample) is tokenized and
counted once per profile and reused for every window and tenant of a run. Folds come from a hash of each
lower-cased text, so equal texts always share a fold: real traffic repeats itself, and a copy learned in one
fold and scored in the other would make two identical distributions look different.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
from scipy import stats

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import MIN_WINDOW, skipped, timed, too_small
from deskpilot.monitoring.types import Signal, SignalKind, SignalName, Window

MAX_TEXTS = 5_000
FOLDS = 2
TOP_TERMS = 10
SMOOTHING = 0.5  # pseudo-count of each feature's presence in each class
_DIGIT = re.compile(r"\d")
_CACHE = "_domain_reference"


@dataclass
class _Encoded:
    """Texts as rows of feature ids (CSR-like: ``ids`` cut by ``starts``), with each row's fold."""

    ids: np.ndarray
    rows: np.ndarray  # the row of each id
    fold: np.ndarray  # the fold of each row
    count: int

    @cached_property
    def row_fold(self) -> np.ndarray:
        """The fold of each id's row (computed once: the reference side serves every window)."""
        return np.asarray(self.fold[self.rows])


@dataclass
class _Reference:
    vocabulary: dict[bytes, int]
    names: list[bytes]
    encoded: _Encoded
    counts: list[np.ndarray]  # per fold: how many reference rows *outside* the fold have each feature
    rows_outside: list[int]


_SEPARATOR_CHARACTERS = (string.punctuation + string.digits).encode()
_SEPARATORS = bytes.maketrans(_SEPARATOR_CHARACTERS, b" " * len(_SEPARATOR_CHARACTERS))
# the joint mark of case (U: has upper case), first letter (S: starts upper case) and digits (D), by flags
_FORMS = [
    f"[{'U' if f & 4 else 'u'}{'S' if f & 2 else 's'}{'D' if f & 1 else 'd'} ends ".encode() for f in range(8)
]
_CHARS = [f"[chars ~2^{k}]".encode() for k in range(64)]
_TOKENS = [f"[tokens ~2^{k}]".encode() for k in range(64)]


def _encode(texts: Sequence[str], vocabulary: dict[bytes, int], names: list[bytes]) -> _Encoded:
    """Feature ids of each text, growing ``vocabulary`` with new ones.

    A text's features are its words and three shape marks (length, word count, and one mark for its case,
    first letter, digits and last character together): form moves under truncation, lower-casing or a new
    channel even when the vocabulary does not. Tuned for speed, since this is most of a window's cost:
    words are split from the lower-cased UTF-8 bytes after one ``bytes.translate`` (C, several times faster
    than a regular expression), counted as often as they occur (twice in one message is rare enough), and a
    text's fold is a hash of those bytes.
    """
    features: list[bytes] = []
    lengths: list[int] = []
    folds: list[int] = []
    for text in texts:
        lowered = text.lower()
        raw = lowered.encode()
        tokens = raw.translate(_SEPARATORS).split()
        last = text[-1:]
        flags = (text != lowered) * 4 + text[:1].isupper() * 2 + (_DIGIT.search(text) is not None)
        form = _FORMS[flags] + (b"word]" if last.isalnum() else last.encode() + b"]")
        features.extend(tokens)
        features.extend((_CHARS[len(text).bit_length()], _TOKENS[len(tokens).bit_length()], form))
        lengths.append(len(tokens) + 3)
        folds.append(zlib.crc32(raw) % FOLDS)
    ids = np.fromiter(map(vocabulary.get, features, repeat(-1)), dtype=np.int64, count=len(features))
    for position in np.flatnonzero(ids < 0):
        feature = features[position]
        index = vocabulary.get(feature)
        if index is None:
            index = vocabulary[feature] = len(names)
            names.append(feature)
        ids[position] = index
    return _Encoded(
        ids=ids,
        rows=np.repeat(np.arange(len(texts)), lengths),
        fold=np.asarray(folds, dtype=np.int64),
        count=len(texts),
    )


def _outside_counts(encoded: _Encoded, size: int) -> tuple[list[np.ndarray], list[int]]:
    row_fold = encoded.row_fold
    counts = [np.bincount(encoded.ids[row_fold != k], minlength=size) for k in range(FOLDS)]
    return counts, [int((encoded.fold != k).sum()) for k in range(FOLDS)]


def _reference(profile: ReferenceProfile, max_texts: int, seed: int) -> _Reference:
    """The reference side, encoded once per profile (kept on the profile object for the next window)."""
    cache: dict[tuple[int, int], _Reference] = profile.__dict__.setdefault(_CACHE, {})
    key = (max_texts, seed)
    if key not in cache:
        texts = _subsample(profile.sample_texts, max_texts, np.random.default_rng(seed))
        vocabulary: dict[bytes, int] = {}
        names: list[bytes] = []
        encoded = _encode(texts, vocabulary, names)
        counts, outside = _outside_counts(encoded, len(names))
        cache[key] = _Reference(vocabulary, names, encoded, counts, outside)
    return cache[key]


def _subsample(texts: Sequence[str], size: int, rng: np.random.Generator) -> list[str]:
    if len(texts) <= size:
        return list(texts)
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=size, replace=False))]


@dataclass(frozen=True)
class FoldTest:
    auc: float  # mean of the folds' AUCs
    z: float  # mean of the folds' Mann–Whitney z-scores
    p_value: float
    error: float  # the AUC's standard error under no drift


def mann_whitney_folds(scores: np.ndarray, is_window: np.ndarray, fold: np.ndarray) -> FoldTest:
    """One-sided test that out-of-fold scores rank window rows above reference rows.

    Why fixed scores can be tested without refitting: a row's score comes from a model fitted on the
    other folds only, so when window and reference texts come from one distribution the rows of a fold
    are exchangeable given that model, whatever their side. The fold's rank sum then has exactly the
    Mann–Whitney permutation distribution, with known mean and tie-corrected variance: each fold's z is
    standard normal (to a close approximation with tens of rows a side).

    The folds' z-scores are not independent, though: a rare n-gram shared by rows of two folds is learned
    from each and scored on the other, which correlates the folds (pooling the folds' rank sums as if
    independent fired about 6 times too often at the 1 % level in our simulations). Their *mean* is used
    instead: the mean of standard normals has variance at most one whatever their correlation, so its
    normal tail is a valid, mildly conservative p-value (0.7 % of null windows under 1 % in simulation).
    With two folds each fold still has half the rows to score, which keeps the power of a single
    train/test split while averaging away its luck. The normal tail also avoids the 1/(B+1) floor of B
    sampled permutations, which a Benjamini–Hochberg cut over many tests must get under.
    """
    aucs, zs, variances = [], [], []
    for k in np.unique(fold):
        inside = fold == k
        ranks = stats.rankdata(scores[inside])
        side = is_window[inside]
        n1, n2 = int(side.sum()), int((~side).sum())
        n = n1 + n2
        if n1 == 0 or n2 == 0:
            continue
        _, ties = np.unique(ranks, return_counts=True)
        tie_term = float((ties**3 - ties).sum()) / (n * (n - 1))
        u = float(ranks[side].sum()) - n1 * (n1 + 1) / 2
        variance = n1 * n2 / 12 * ((n + 1) - tie_term)
        aucs.append(u / (n1 * n2))
        zs.append((u - n1 * n2 / 2) / np.sqrt(variance) if variance > 0 else 0.0)
        variances.append(variance / (n1 * n2) ** 2)
    if not aucs:
        return FoldTest(0.5, 0.0, 1.0, float("nan"))
    z = float(np.mean(zs))
    error = float(np.sqrt(np.sum(variances)) / len(variances))
    return FoldTest(float(np.mean(aucs)), z, float(stats.norm.sf(z)), error)


def _top_terms(names: Sequence[bytes], coef: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """The features pushing hardest towards each side, with their (fold-averaged) weights."""
    order = np.argsort(coef)
    window = [i for i in order[::-1][:TOP_TERMS] if coef[i] > 0]
    reference = [i for i in order[:TOP_TERMS] if coef[i] < 0]

    def term(i: int) -> dict[str, Any]:
        return {"term": names[i].decode(errors="replace"), "weight": round(float(coef[i]), 3)}

    return {"window_terms": [term(i) for i in window], "reference_terms": [term(i) for i in reference]}


@timed
def domain_classifier_signal(
    profile: ReferenceProfile,
    window: Window,
    *,
    max_texts: int = MAX_TEXTS,
    seed: int = 0,
) -> Signal:
    """Out-of-fold AUC of naive Bayes telling window texts (1) from reference texts (0).

    Each side is subsampled to ``max_texts``. ``statistic`` is the AUC (0.5: indistinguishable),
    ``p_value`` the one-sided test of :func:`mann_whitney_folds`; the detail lists the words (and shape
    marks) whose presence separates the sides most, with their log-odds weights averaged over the folds.
    """
    name, kind = SignalName.DOMAIN_CLASSIFIER, SignalKind.INPUT
    if small := too_small(name, kind, len(window), len(profile.sample_texts)):
        return small
    if len(profile.sample_texts) < MIN_WINDOW[name]:
        return skipped(name, kind, "profile has too few sample texts", len(window), len(profile.sample_texts))
    reference = _reference(profile, max_texts, seed)
    current = _subsample(window.texts, max_texts, np.random.default_rng(seed + 1))
    vocabulary, names = dict(reference.vocabulary), list(reference.names)
    encoded = _encode(current, vocabulary, names)
    size = len(names)
    window_counts, window_outside = _outside_counts(encoded, size)
    ref = reference.encoded
    scores = np.zeros(ref.count + encoded.count)
    weights_sum = np.zeros(size)
    for k in range(FOLDS):
        reference_counts = np.pad(reference.counts[k], (0, size - len(reference.counts[k])))
        weights = np.log((window_counts[k] + SMOOTHING) / (window_outside[k] + 2 * SMOOTHING)) - np.log(
            (reference_counts + SMOOTHING) / (reference.rows_outside[k] + 2 * SMOOTHING)
        )
        weights[(window_counts[k] + reference_counts) == 0] = 0.0  # unseen by this fold's fit: no evidence
        weights_sum += weights
        for side, offset in ((ref, 0), (encoded, ref.count)):
            inside = side.row_fold == k
            scores[offset : offset + side.count] += np.bincount(
                side.rows[inside], weights=weights[side.ids[inside]], minlength=side.count
            )
    labels = np.r_[np.zeros(ref.count, dtype=bool), np.ones(encoded.count, dtype=bool)]
    test = mann_whitney_folds(scores, labels, np.r_[ref.fold, encoded.fold])
    return Signal(
        name=name,
        kind=kind,
        statistic=test.auc,
        p_value=test.p_value,
        n_window=len(window),
        n_reference=len(profile.sample_texts),
        sampling_error=test.error,
        detail={
            "z": round(test.z, 3),
            "texts_window": encoded.count,
            "texts_reference": ref.count,
            **_top_terms(names, weights_sum / FOLDS),
        },
    )
