"""Text normalization: folding for de-duplication and grouping, and a mapped copy for pattern matching.

``normalize_texts`` folds messages so near-identical ones compare equal. ``normalize_for_matching`` makes
the copy that PII detection reads: the same value typed with a no-break space, a tab, full-width digits or a
zero-width space inside reads as its plain ASCII form there, and every offset found in the copy maps back
to the original characters, so that a redaction replaces what the customer actually typed.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # pandas is only needed by the caller of normalize_texts; detection must not import it
    import pandas as pd

__all__ = ["MatchingText", "is_matching_form", "normalize_for_matching", "normalize_texts"]

_NOT_WORD = r"[^\w\s]"


def normalize_texts(texts: pd.Series) -> pd.Series:
    """Fold case, Unicode forms, punctuation and spacing, so near-identical messages compare equal."""
    return (
        texts.astype(str)
        .str.normalize("NFKC")
        .str.casefold()
        .str.replace(_NOT_WORD, " ", regex=True)
        .str.split()
        .str.join(" ")
    )


# A stretch the matching copy must rewrite: two or more spaces or characters outside printable ASCII (a
# no-break space with the spaces around it, "£1"'s pound sign), or one such character that is not a space.
# Text without one is its own matching copy (``is_matching_form``).
_IRREGULAR: Final = re.compile(r"[^!-~]{2,}|[^ -~]")
# Invisible characters that take no part in what a value is: they are dropped from the copy. Format
# characters (Cf: zero-width space and joiners, word joiner, BOM, soft hyphen, bidi controls), controls
# that are not whitespace, and the default-ignorable marks outside Cf (grapheme joiner, variation
# selectors, Mongolian free variation selectors, Hangul fillers).
_IGNORABLE_CATEGORIES: Final = frozenset({"Cf", "Cc"})
_IGNORABLE_EXTRA: Final = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0}
    | set(range(0xFE00, 0xFE10))
    | set(range(0xE0100, 0xE01F0))
)
# What ``str.splitlines`` splits on: a whitespace run with one of these in it is a line break in the copy.
_LINE_BREAKS: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Look-alikes that NFKC leaves alone but a separator check must see as their ASCII form.
_FOLD: Final = {0x2044: "/", 0x2215: "/", 0x2212: "-"}


@dataclass(frozen=True, slots=True)
class MatchingText:
    """A normalized copy of ``original`` and the map from the copy's offsets back to the original's.

    The map is piecewise: ``_copy_starts[k]`` is where piece ``k`` starts in the copy; a piece is either
    copied unchanged (``_linear[k]``, offsets shift by a constant) or a rewritten unit whose every character
    stands for ``original[_orig_starts[k]:_orig_ends[k]]`` (a whitespace run, a character with its combining
    marks). Empty map: the copy is the original.
    """

    original: str
    text: str
    _copy_starts: tuple[int, ...] = ()
    _orig_starts: tuple[int, ...] = ()
    _orig_ends: tuple[int, ...] = ()
    _linear: tuple[bool, ...] = ()

    @property
    def unchanged(self) -> bool:
        """True when the copy is the original, so offsets need no mapping."""
        return not self._copy_starts

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original span that ``text[start:end]`` (a non-empty span) was made from."""
        if not self._copy_starts:
            return start, end
        first = bisect_right(self._copy_starts, start) - 1
        last = bisect_right(self._copy_starts, end - 1) - 1
        if self._linear[first]:
            orig_start = self._orig_starts[first] + start - self._copy_starts[first]
        else:
            orig_start = self._orig_starts[first]
        if self._linear[last]:
            orig_end = self._orig_starts[last] + end - self._copy_starts[last]
        else:
            orig_end = self._orig_ends[last]
        return orig_start, orig_end


def is_matching_form(text: str) -> bool:
    """True when ``text`` is its own matching copy: printable ASCII with single spaces (most support text).

    Three C-speed string checks, so that the common case costs next to nothing on every request.
    """
    return text.isascii() and text.isprintable() and "  " not in text


def normalize_for_matching(text: str) -> MatchingText:
    """The copy of ``text`` that pattern matching reads, with its map back to ``text``.

    Per character and its combining marks: NFKC (full-width and other compatibility forms to their plain
    form, no-break spaces to spaces), any decimal digit to its ASCII digit, dashes and a few slash and minus
    look-alikes to ``-`` and ``/``. Invisible characters are dropped, and each whitespace run (no-break
    and ideographic spaces, doubled spaces, with invisible characters inside) becomes one space, or one
    ``\n`` when it breaks the line, or one ``\t`` when it holds a tab: a number split over two lines or
    tab-separated can be read whole where a pattern allows it, while the columns and lines of a pasted
    statement do not run together where it does not.
    """
    if is_matching_form(text):
        return MatchingText(text, text)
    pieces: list[_Piece] = []
    cursor = 0  # original offset up to which everything is in ``pieces``
    for match in _IRREGULAR.finditer(text):
        start, end = match.span()
        # a combining mark starts the stretch: its ASCII base letter belongs with it, for NFKC to compose
        if start > cursor and unicodedata.combining(text[start]):
            start -= 1
        if start > cursor:
            pieces.append((text[cursor:start], cursor, start, True))
        _rewrite(text, start, end, pieces)
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], cursor, len(text), True))
    if not pieces:  # nothing but invisible characters
        return MatchingText(text, "", (0,), (0,), (0,), (False,))
    copy_starts = [0]
    for piece, *_ in pieces[:-1]:
        copy_starts.append(copy_starts[-1] + len(piece))
    parts, orig_starts, orig_ends, linear = zip(*pieces, strict=True)
    return MatchingText(text, "".join(parts), tuple(copy_starts), orig_starts, orig_ends, linear)


_Piece = tuple[str, int, int, bool]  # (copy text, original start, original end, copied unchanged)


def _rewrite(text: str, start: int, end: int, pieces: list[_Piece]) -> None:
    """Rewrite ``text[start:end]`` one unit at a time: a whitespace run, or a character with its marks."""
    space_start = -1  # start of the whitespace run being collected, -1 when none
    space_end = -1
    space = " "  # what that run becomes: a line break if it breaks the line, else a tab if it has one
    i = start
    while i < end:
        char = text[i]
        if char.isspace():
            if space_start < 0:
                space_start, space = i, " "
            if char in _LINE_BREAKS:
                space = "\n"
            elif char == "\t" and space == " ":
                space = "\t"
            space_end = i = i + 1
            continue
        code = ord(char)
        if code in _IGNORABLE_EXTRA or unicodedata.category(char) in _IGNORABLE_CATEGORIES:
            i += 1  # dropped; a whitespace run carries on across it
            continue
        if space_start >= 0:
            pieces.append((space, space_start, space_end, False))
            space_start = -1
        j = i + 1
        while j < end and unicodedata.combining(text[j]):
            j += 1
        if code < 0x80 and j == i + 1:
            pieces.append((char, i, j, True))
        else:
            folded = _fold(unicodedata.normalize("NFKC", text[i:j]))
            if folded:
                pieces.append((folded, i, j, False))
        i = j
    if space_start >= 0:
        pieces.append((space, space_start, space_end, False))


def _fold(unit: str) -> str:
    """Decimal digits of any script to ASCII, dashes to '-', slash and minus look-alikes to ASCII."""
    if unit.isascii():
        return unit
    out: list[str] = []
    for char in unit:
        if char.isascii():
            out.append(char)
        elif char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
        elif (folded := _FOLD.get(ord(char))) is not None:
            out.append(folded)
        elif unicodedata.category(char) == "Pd":
            out.append("-")
        elif char.isspace():  # NFKC turned a compatibility character into a space
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)
