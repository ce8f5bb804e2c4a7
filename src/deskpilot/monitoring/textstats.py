"""Cheap text features shared by the reference profile and the input-drift signals.

The tokenizer and the language guess must be the same at training and at monitoring time, or the monitor
would measure its own change of method; both live here for that reason.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\W\d_]{2,}|<[A-Z_]+>", re.UNICODE)

# A handful of very frequent function words per language: enough to tell whether a ticket is English,
# another European language, or something else (a translation layer switched off, a new market).
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and to is my it of for in have how can you what on was this not with why".split()),
    "es": frozenset("el la que de en los por una para mi con del las es se no como".split()),
    "fr": frozenset("le la les de des est pour une dans que qui pas mon ma avec sur je".split()),
    "de": frozenset("der die das und ist nicht ich mein meine ein eine mit auf für wie kann".split()),
    "pt": frozenset("o os de que não um uma para com meu minha por como está eu".split()),
    "it": frozenset("il lo gli di che non un una per con mio mia come sono della".split()),
    "nl": frozenset("de het een en is niet ik mijn met voor van hoe kan wat".split()),
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
