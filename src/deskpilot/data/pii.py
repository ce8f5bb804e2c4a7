"""PII detection and redaction for ticket text, applied at ingest and before anything is stored or logged.

Detected values become typed placeholders (``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IBAN>``, ``<IP>``,
``<CREDENTIALS>``, ``<NAME>`` for a custom pattern) rather than being deleted, so a model trained on redacted
text still sees that "my card <CARD> was declined" mentions a card. Redaction is idempotent: placeholders
are never matched again, so text may pass through it at every layer.

Detection reads a normalized copy of the message (``deskpilot.data.text.normalize_for_matching``: NFKC,
digits of any script as ASCII, invisible characters dropped, each whitespace run one space, tab or line
break), so that a card typed with no-break spaces, full-width digits or a zero-width space inside is the
same card. Each span found there is mapped back, and redaction replaces the original characters, invisible
ones included.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import phonenumbers

from deskpilot.data import pii_patterns as pp
from deskpilot.data.text import MatchingText, is_matching_form, normalize_for_matching
from deskpilot.errors import PiiConfigError

__all__ = ["BUILTIN_KINDS", "DEFAULT_PHONE_REGIONS", "CustomPattern", "PiiRedactor", "PiiSpan"]

BUILTIN_KINDS: Final = pp.BUILTIN_KINDS
DEFAULT_PHONE_REGIONS: Final = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "AU", "CA", "IN")

# Overlap ties (same length) go to the more specific detector; custom patterns are the operator's explicit
# intent, so they rank first.
_CUSTOM_RANK: Final = 0
_RANK: Final[dict[str, int]] = {
    pp.CREDENTIALS: 1,
    pp.IBAN: 2,
    pp.CARD: 3,
    pp.EMAIL: 4,
    pp.IP: 5,
    pp.PHONE: 6,
}
_CUSTOM_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One detection: ``text[start:end]`` is PII of ``kind`` (a built-in kind or a custom pattern's name)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CustomPattern:
    """An operator-defined PII kind: ``name`` becomes the placeholder ``<NAME>``; ``pattern`` is a regex."""

    name: str
    pattern: str


@dataclass(frozen=True, slots=True)
class _Compiled:
    kind: str
    rank: int
    regex: re.Pattern[str]


class PiiRedactor:
    """Finds PII in text and replaces it with typed placeholders.

    Everything is compiled once here so that ``find`` does no setup per message; one instance is safe to
    share across threads because it holds no mutable state after construction.
    """

    def __init__(
        self,
        *,
        kinds: Iterable[str] | None = None,
        custom_patterns: Sequence[CustomPattern] = (),
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        if isinstance(kinds, str):  # "EMAIL" means one kind, not the letters E, M, A, I, L
            kinds = (kinds,)
        enabled = BUILTIN_KINDS if kinds is None else tuple(dict.fromkeys(k.upper() for k in kinds))
        unknown = [k for k in enabled if k not in BUILTIN_KINDS]
        if unknown:
            raise PiiConfigError(
                f"unknown PII kind(s) {', '.join(unknown)}; choose from {', '.join(BUILTIN_KINDS)}",
                details={"unknown": unknown, "known": list(BUILTIN_KINDS)},
            )
        regions = tuple(r.upper() for r in phone_regions)
        bad_regions = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if bad_regions:
            raise PiiConfigError(
                f"unknown phone region(s) {', '.join(bad_regions)}: use ISO 3166-1 alpha-2 codes",
                details={"unknown": bad_regions},
            )
        self.kinds: tuple[str, ...] = enabled
        self.phone_regions: tuple[str, ...] = regions
        self._custom: tuple[_Compiled, ...] = tuple(
            _compile_custom(p, taken=BUILTIN_KINDS) for p in custom_patterns
        )
        names = [c.kind for c in self._custom]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise PiiConfigError(
                f"custom PII pattern name(s) used twice: {', '.join(duplicated)}",
                details={"names": duplicated},
            )
        placeholders = "|".join(re.escape(k) for k in (*BUILTIN_KINDS, *names))
        self._placeholder = re.compile(rf"<(?:{placeholders})>")
        self._builtin: tuple[tuple[str, Callable[[str], Iterator[tuple[int, int]]]], ...] = tuple(
            (kind, finder)
            for kind, finder in (
                (pp.CREDENTIALS, pp.find_credentials),
                (pp.EMAIL, pp.find_emails),
                (pp.IP, pp.find_ips),
                (pp.IBAN, pp.find_ibans),
                (pp.CARD, pp.find_cards),
            )
            if kind in enabled
        )
        self._phones = pp.PHONE in enabled and bool(regions)

    def find(self, text: str) -> list[PiiSpan]:
        """Detections in ``text``, sorted by position and never overlapping."""
        # Most messages need no copy, and most of those no built-in finder: both are decided at C speed.
        if is_matching_form(text):
            if not self._custom and not pp.may_contain_pii(text):
                return []
            copy = None
        elif not self._custom and text.isascii() and not pp.may_contain_pii_ascii(text):
            return []  # the copy of ASCII text differs in spacing and controls only: it could hold nothing
        else:
            copy = normalize_for_matching(text)
        matching = text if copy is None else copy.text
        candidates: list[tuple[int, int, int, str]] = []  # (rank, start, end, kind), offsets in ``text``
        for custom in self._custom:
            # An operator's pattern sees the text as typed (it may name a tab or a full-width form) and the
            # matching copy (where a zero-width space no longer splits the value).
            candidates.extend(
                (custom.rank, m.start(), m.end(), custom.kind)
                for m in custom.regex.finditer(text)
                if m.end() > m.start()
            )
            if copy is not None:
                candidates.extend(
                    (custom.rank, *copy.to_original(m.start(), m.end()), custom.kind)
                    for m in custom.regex.finditer(matching)
                    if m.end() > m.start()
                )
        if pp.may_contain_pii(matching):
            self._find_builtin(copy or MatchingText(text, text), candidates)
        if not candidates:
            return []
        return self._resolve(text, candidates)

    def redact(self, text: str) -> str:
        """``text`` with every detection replaced by its placeholder."""
        return self.redact_with_counts(text)[0]

    def redact_with_counts(self, text: str) -> tuple[str, Counter[str]]:
        """The redacted text and how many values of each kind were replaced."""
        spans = self.find(text)
        counts: Counter[str] = Counter()
        if not spans:
            return text, counts
        parts: list[str] = []
        cursor = 0
        for span in spans:
            parts.append(text[cursor : span.start])
            parts.append(f"<{span.kind}>")
            counts[span.kind] += 1
            cursor = span.end
        parts.append(text[cursor:])
        return "".join(parts), counts

    def redact_many(self, texts: Iterable[str]) -> tuple[list[str], Counter[str]]:
        """Redacted texts in input order, and counts by kind over all of them (for snapshot metadata)."""
        out: list[str] = []
        total: Counter[str] = Counter()
        for text in texts:
            redacted, counts = self.redact_with_counts(text)
            out.append(redacted)
            total.update(counts)
        return out, total

    def _find_builtin(self, copy: MatchingText, candidates: list[tuple[int, int, int, str]]) -> None:
        """Run the finders on the matching copy, most specific first, masking what each finds from the ones
        after it; spans go into ``candidates`` mapped back to the original text.

        Masking keeps a found value from confusing the next finder: "user:pass@host" is not an e-mail
        address, and "4111 1111 1111 1111 192.0.2.1" is a card and an IP, not one long digit run.
        """
        text = copy.text
        for kind, finder in self._builtin:
            found = list(finder(text))
            if found:
                rank = _RANK[kind]
                candidates.extend((rank, *copy.to_original(start, end), kind) for start, end in found)
                text = pp.mask(text, found)
        if self._phones:
            rank = _RANK[pp.PHONE]
            candidates.extend(
                (rank, *copy.to_original(start, end), pp.PHONE)
                for start, end in pp.find_phones(text, self.phone_regions)
            )

    def _resolve(self, text: str, candidates: list[tuple[int, int, int, str]]) -> list[PiiSpan]:
        """Longest span wins and ties go to the higher-ranked kind; existing placeholders are off limits."""
        # Taken spans never overlap, so sorted by start the only one that can overlap [start, end) is the
        # last that starts before ``end``: one bisect per candidate, not a scan (a pasted list of cards).
        starts: list[int] = []
        ends: list[int] = []
        if "<" in text:
            for m in self._placeholder.finditer(text):
                starts.append(m.start())
                ends.append(m.end())
        kept: list[PiiSpan] = []
        for _, start, end, kind in sorted(candidates, key=lambda c: (c[1] - c[2], c[0], c[1])):
            at = bisect_left(starts, end)
            if at and ends[at - 1] > start:
                continue
            starts.insert(at, start)
            ends.insert(at, end)
            kept.append(PiiSpan(kind, start, end))
        kept.sort(key=lambda span: span.start)
        return kept


def _compile_custom(pattern: CustomPattern, *, taken: Sequence[str]) -> _Compiled:
    """Compile one custom pattern, failing with the pattern's name and the reason, never at match time."""
    if not _CUSTOM_NAME.fullmatch(pattern.name):
        raise PiiConfigError(
            f"custom PII pattern name {pattern.name!r} must be a letter followed by letters, digits or _",
            details={"name": pattern.name, "pattern": pattern.pattern, "reason": "invalid name"},
        )
    kind = pattern.name.upper()
    if kind in taken:
        raise PiiConfigError(
            f"custom PII pattern {pattern.name!r} reuses the built-in kind {kind}",
            details={
                "name": pattern.name,
                "pattern": pattern.pattern,
                "reason": "name clashes with a built-in",
            },
        )
    try:
        regex = re.compile(pattern.pattern)
    except re.error as exc:
        raise PiiConfigError(
            f"custom PII pattern {pattern.name!r} does not compile: {exc}",
            details={
                "name": pattern.name,
                "pattern": pattern.pattern,
                "reason": str(exc),
                "position": exc.pos,
            },
        ) from exc
    if regex.fullmatch("") is not None:
        raise PiiConfigError(
            f"custom PII pattern {pattern.name!r} matches the empty string, so it cannot mark a value",
            details={"name": pattern.name, "pattern": pattern.pattern, "reason": "matches empty string"},
        )
    return _Compiled(kind=kind, rank=_CUSTOM_RANK, regex=regex)
