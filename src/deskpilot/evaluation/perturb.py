"""Seeded text perturbations that should not change a ticket's intent (CheckList-style invariance).

Each perturbation takes the text and a ``random.Random`` and returns a different text, or ``None`` when it
does not apply (no word long enough for a typo, no entity to swap, nothing left to change). All randomness
comes from the generator passed in, so a seed reproduces every output. PII placeholders such as ``<EMAIL>``
are opaque: no perturbation edits their letters, only ``entities`` may swap one for another kind.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from deskpilot.data.pii import BUILTIN_KINDS

__all__ = ["FIRST_NAMES", "PERTURBATIONS", "Perturbation", "casing", "entities", "punctuation", "typo"]

Perturbation = Callable[[str, random.Random], str | None]

_PLACEHOLDER: Final = re.compile(r"<[A-Z][A-Z0-9_]*>")
_LETTERS: Final = re.compile(r"<[A-Z][A-Z0-9_]*>|[^\W\d_]+")
_TRAILING: Final = re.compile(r"[.!?…,;:]+$")
_ENDINGS: Final = ("", "?", "!", "...")
_MIN_TYPO_LENGTH: Final = 4
_CURRENCIES: Final = ("£", "$", "€")
# Common first names that are not also ordinary English words (no "Will", "May", "Mark", "Grace").
FIRST_NAMES: Final = (
    "Aisha", "Ahmed", "Anna", "Carlos", "Chloe", "Daniel", "David", "Elena", "Emily", "Emma",
    "Fatima", "Hans", "James", "Jessica", "John", "Juan", "Kenji", "Lars", "Laura", "Lucas",
    "Luis", "Maria", "Mary", "Michael", "Mohammed", "Noah", "Olivia", "Pierre", "Priya", "Rahul",
    "Robert", "Sarah", "Sophie", "Thomas", "Wei", "Yuki",
)  # fmt: skip
_ENTITY: Final = re.compile(
    r"(?P<placeholder><(?:" + "|".join(map(re.escape, BUILTIN_KINDS)) + r")>)"
    r"|(?P<currency>[£$€])"
    r"|(?P<number>(?<![^\W_])\d+(?:[.,]\d+)*(?![^\W_]))"
    r"|(?P<name>\b(?:" + "|".join(FIRST_NAMES) + r")\b)"
)


def typo(text: str, rng: random.Random) -> str | None:
    """Swap two adjacent inner letters of one word (4+ letters), or drop one of its inner letters."""
    words = [m for m in _LETTERS.finditer(text) if not m.group().startswith("<")]
    words = [m for m in words if len(m.group()) >= _MIN_TYPO_LENGTH]
    if not words:
        return None
    match = rng.choice(words)
    word = match.group()
    swaps = [i for i in range(1, len(word) - 2) if word[i] != word[i + 1]]
    if swaps and rng.random() < 0.5:
        i = rng.choice(swaps)
        changed = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    else:
        i = rng.randrange(1, len(word) - 1)
        changed = word[:i] + word[i + 1 :]
    return text[: match.start()] + changed + text[match.end() :]


def casing(text: str, rng: random.Random) -> str | None:
    """The whole text in lower case, upper case or title case, placeholders untouched."""
    options = [c for c in (_recase(text, mode) for mode in ("lower", "upper", "title")) if c != text]
    return rng.choice(options) if options else None


def punctuation(text: str, rng: random.Random) -> str | None:
    """Strip the trailing punctuation, or end the text with '?', '!' or '...' instead."""
    base = text.rstrip()
    core = _TRAILING.sub("", base).rstrip()
    if not core:
        return None
    options = [core + end for end in _ENDINGS if core + end != base]
    return rng.choice(options)


def entities(text: str, rng: random.Random) -> str | None:
    """Swap one entity: a number for another of as many digits, a currency symbol, a placeholder, a name."""
    found = list(_ENTITY.finditer(text))
    if not found:
        return None
    match = rng.choice(found)
    kind, value = match.lastgroup, match.group()
    if kind == "placeholder":
        replacement = f"<{rng.choice([k for k in BUILTIN_KINDS if f'<{k}>' != value])}>"
    elif kind == "currency":
        replacement = rng.choice([c for c in _CURRENCIES if c != value])
    elif kind == "number":
        replacement = _other_number(value, rng)
    else:
        replacement = rng.choice([n for n in FIRST_NAMES if n != value])
    return text[: match.start()] + replacement + text[match.end() :]


PERTURBATIONS: Final[Mapping[str, Perturbation]] = MappingProxyType(
    {"typo": typo, "casing": casing, "punctuation": punctuation, "entities": entities}
)


def _recase(text: str, mode: str) -> str:
    parts: list[str] = []
    cursor = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(_recase_plain(text[cursor : match.start()], mode))
        parts.append(match.group())
        cursor = match.end()
    parts.append(_recase_plain(text[cursor:], mode))
    return "".join(parts)


def _recase_plain(text: str, mode: str) -> str:
    if mode == "lower":
        return text.lower()
    if mode == "upper":
        return text.upper()
    # str.title() would write "Hasn'T": capitalise only the first letter of each whitespace-separated word.
    return re.sub(r"\S+", lambda m: _capitalise(m.group()), text)


def _capitalise(word: str) -> str:
    first = next((i for i, ch in enumerate(word) if ch.isalnum()), None)
    if first is None:
        return word
    return word[:first] + word[first].upper() + word[first + 1 :].lower()  # "3rd" stays "3rd"


def _other_number(value: str, rng: random.Random) -> str:
    """Same digit count and separators, different value; a leading non-zero digit stays non-zero."""
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    while True:
        chars = list(value)
        for i in digits:
            low = 1 if i == digits[0] and value[i] != "0" else 0
            chars[i] = str(rng.randint(low, 9))
        candidate = "".join(chars)
        if candidate != value:
            return candidate
