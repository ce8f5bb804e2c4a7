"""Cheap text features shared by the reference profile and the input-drift signals.

The tokenizer and the language guess must be the same at training and at monitoring time, or the monitor
would measure its own change of method; both live here for that reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W\d_]{2,}|<[A-Z_]+>", re.UNICODE)


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# A handful of very frequent function words per language: enough to tell whether a ticket is English,
# another European language, or something else (a translation layer switched off, a new market).
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words("the and to is my it of for in have how can you what on was this not with why"),
    "es": _words("el la que de en los por una para mi con del las es se no como"),
    "fr": _words("le la les de des est pour une dans que qui pas mon ma avec sur je"),
    "de": _words("der die das und ist nicht ich mein meine ein eine mit auf für wie kann"),
    "pt": _words("o os de que não um uma para com meu minha por como está eu"),
    "it": _words("il lo gli di che non un una per con mio mia come sono della"),
    "nl": _words("de het een en is niet ik mijn met voor van hoe kan wat"),
}
OTHER_LANGUAGE = "other"
NON_LATIN = "non_latin"


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of two letters or more, and PII placeholders as single tokens."""
    return [token if token.startswith("<") else token.lower() for token in _TOKEN.findall(text)]


def guess_language(text: str) -> str:
    """The language whose function words the text uses most; ``non_latin`` for mostly non-Latin script."""
    letters = [ch for ch in text if ch.isalpha()]
    if letters and sum(1 for ch in letters if ord(ch) > 0x24F) > len(letters) / 2:
        return NON_LATIN
    words = [token for token in tokenize(text) if not token.startswith("<")]
    best, best_hits = OTHER_LANGUAGE, 0
    for language, stopwords in _STOPWORDS.items():
        hits = sum(1 for word in words if word in stopwords)
        if hits > best_hits:
            best, best_hits = language, hits
    return best


def unseen_counts(
    tokenized: Sequence[list[str]], vocabulary: set[str] | frozenset[str]
) -> tuple[list[int], list[int]]:
    """Per tokenized text: how many of its tokens are outside ``vocabulary``, and how many tokens it has."""
    unseen = [sum(1 for token in tokens if token not in vocabulary) for tokens in tokenized]
    return unseen, [len(tokens) for tokens in tokenized]


def ratio_with_error(numerators: list[int], denominators: list[int]) -> tuple[float, float]:
    """A rate over tokens and its standard error, treating texts (not tokens) as the sampled units.

    A ticket's tokens are not independent draws: one odd ticket brings several unseen tokens, so the
    binomial error over tokens would be too small. This is the ratio estimator's linearised (delta-method)
    error over texts.
    """
    n = len(numerators)
    total = sum(denominators)
    if n < 2 or total == 0:
        return (0.0 if total == 0 else sum(numerators) / total), float("inf")
    rate = sum(numerators) / total
    residual = sum((u - rate * t) ** 2 for u, t in zip(numerators, denominators, strict=True))
    return rate, (residual * n / (n - 1)) ** 0.5 / total
