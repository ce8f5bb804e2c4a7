"""Candidate patterns and validators for the built-in PII kinds.

Each ``find_*`` function yields ``(start, end)`` offsets of one kind. Regexes only propose candidates; a
checksum or a parser (Luhn, mod-97, ``ipaddress``) decides, because support text is full of digit strings
that look like PII and are not: order numbers, amounts, dates, versions. The redactor in ``pii.py`` runs
these on the matching copy of a message (``deskpilot.data.text.normalize_for_matching``: ASCII digits and
punctuation, no invisible characters, one space, tab or line break for each run of whitespace), resolves
overlaps and writes placeholders.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from typing import Final

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

EMAIL: Final = "EMAIL"
PHONE: Final = "PHONE"
CARD: Final = "CARD"
IBAN: Final = "IBAN"
IP: Final = "IP"
CREDENTIALS: Final = "CREDENTIALS"
BUILTIN_KINDS: Final[tuple[str, ...]] = (EMAIL, PHONE, CARD, IBAN, IP, CREDENTIALS)

# A spelled-out '@' or '.' in an e-mail address: "jane(at)example(dot)com", "jane [at] example [dot] com".
_AT: Final = r" ?[(\[{<] ?[aA][tT] ?[)\]}>] ?"
_DOT: Final = r" ?[(\[{<] ?[dD][oO][tT] ?[)\]}>] ?"
SPELLED_AT_RE: Final = re.compile(r"[(\[{<] ?[aA][tT] ?[)\]}>]")

# Every built-in kind needs a digit, an '@' or a ':', or an '@' spelled out; text with none of them skips
# all built-in work (``may_contain_pii``).
MAY_CONTAIN_PII: Final = re.compile(r"[\d@:]")
# A spelled-out '@' as it may look in ASCII text before its matching copy drops controls and unifies spaces.
_SPELLED_AT_ASCII: Final = re.compile(
    r"[(\[{<][\s\x00-\x1f\x7f]*[aA][\x00-\x1f\x7f]*[tT][\s\x00-\x1f\x7f]*[)\]}>]"
)

# RFC 5322 also allows '/' in a local part; leaving it out keeps "https://user@host" and paths out of e-mail.
_LOCAL_CHARS: Final = r"[\w!#$%&'*+=?^`{|}~-]"
# A top-level domain in ASCII (or punycode), so that an address glued to the text after it ends there
# ("...@example.jpにメール", "jane@example.com4111...").
_TLD: Final = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})(?![A-Za-z_-])"
EMAIL_RE: Final = re.compile(
    r"(?<![\w!#$%&'*+=?^`{|}~.-])"  # start at the beginning of the local part, never inside it
    rf"{_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+" + _TLD
)
SPELLED_EMAIL_RE: Final = re.compile(
    r"(?<![\w!#$%&'*+=?^`{|}~.-])"
    rf"{_LOCAL_CHARS}+(?:(?:\.|{_DOT}){_LOCAL_CHARS}+)*"
    rf"(?:@|{_AT})(?:[^\W_](?:[\w-]{{0,61}}[^\W_])?(?:\.|{_DOT}))+{_TLD}"
)

# A userinfo may hold an unescaped '@' in a careless password, so it runs to the last '@' before the host.
CREDENTIALS_RE: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<userinfo>[^\s/?#]+)@(?=[\w\[])")

# Digit groups joined by one separator each (a space or a line break, or a dash, dot or slash with at most
# one of those either side): where a card number may hide, together with the digits written next to it.
DIGIT_RUN_RE: Final = re.compile(r"\d+(?:(?:\s?[-./]\s?|\s)\d+)*")
_DIGITS: Final = re.compile(r"\d+")
_CARD_DIGITS: Final = range(13, 20)
_CARD_NETWORK_DIGITS: Final = frozenset("23456")
_PLAIN_SEPARATORS: Final = frozenset({" ", "-"})
# How cards are printed: fours with a shorter last group (4-4-4-4, 4-4-4-4-3, ...), or 4-6-5 / 4-6-4.
_ODD_CARD_LAYOUTS: Final = frozenset({(4, 6, 5), (4, 6, 4)})
_MAX_LINE_BREAKS_IN_CARD: Final = 3  # line breaks or tabs: one group a line or a column at most

# Compact, or in groups of four split by spaces, dashes or a line break; not inside a word (a digit may
# touch the country code: "...1111GB82..." is two values run together).
IBAN_RE: Final = re.compile(
    r"(?<![^\W\d_])[A-Z]{2}\d{2}(?:(?:[\s-][A-Z0-9]{4}){2,7}(?:[\s-][A-Z0-9]{1,4})?|[A-Z0-9]{11,30})\b",
    re.IGNORECASE,
)

IPV4_RE: Final = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6_RE: Final = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)"
)
# "v1.2.3.4", "build 4.1.0.12", "section 3.2.1.4": dotted numbers that name a release or a clause, not a host.
_NUMBERING_BEFORE: Final = re.compile(
    r"(?i)(?:\bv|\bver|version|build|release|firmware|patch|section|clause|rule|article|chapter|§)\W{0,2}\Z"
)

# Seven or more digits with light separators: the only text worth handing to the (slow) phone matcher.
# A German-style "030/1234567" area code and an "x12" / "ext. 12" extension ride along.
PHONE_HINT_RE: Final = re.compile(
    r"(?:\b0\d{1,4}/ ?)?\+?\d(?:[ .()\u00a0-]{0,3}\d){6,}(?:\s?(?:[xX]|[eE]xt\.?|[eE]xtension)\s?\d{1,6}\b)?"
)
_DATE_LIKE: Final = re.compile(r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)")
# "INV-2024-000123", "ORD_5551234567": digits glued to a word are part of an identifier.
_GLUED_TO_WORD: Final = re.compile(r"[^\W\d_][-_/]?\Z")
# Card- and IBAN-shaped groups of four, and more digits than any dialled number: not worth the matcher.
_FOUR_DIGIT_GROUPS: Final = re.compile(r"\d{4}(?:[ -]\d{4}){3,}(?:[ -]\d{1,4})?")
_MAX_PHONE_DIGITS: Final = 17
_TIME_AFTER: Final = re.compile(r":\d")
_TIME_BEFORE: Final = re.compile(r"\d:\Z")
_ONE_DIGIT_DOTTED_GROUP: Final = re.compile(r"(?:^|\.)\d(?:\.|\Z)")
_DIGITS_AND_DOTS: Final = frozenset("0123456789.")
# A bare digit run shortly after these words is a reference number, even when it happens to dial, unless a
# phone word comes after them ("order 123 arrived, call 2025550143").
_REFERENCE_WORD: Final = re.compile(
    r"(?i)\b(?:order|ref|reference|invoice|transaction|txn|tracking|ticket|case|confirmation|booking|parcel"
    r"|shipment|receipt|payment|transfer|account|acct|customer|member|id|utr"
    # the same in the languages of the default phone regions: de, fr, es, it, nl
    r"|bestellung|bestellnummer|kundennummer|rechnung|rechnungsnummer|konto|kontonummer|auftrag|referenz"
    r"|commande|facture|compte|dossier|r[ée]f[ée]rence|client"
    r"|pedido|factura|cuenta|referencia|cliente|ordine|fattura|conto|riferimento"
    r"|bestelling|bestelnummer|factuur|rekening|klantnummer|referentie)\b|#"
)
_PHONE_WORD: Final = re.compile(
    r"(?i)\b(?:call|calling|phone|tel|mobile|cell|ring|text|sms|whatsapp|fax|contact|dial|reach)"
)
_EXTENSION: Final = re.compile(r"(?i)[\s,;]*(?:ext\.?|extension|x|#)\s*\d{1,6}\Z")
_PHONE_CONTEXT_WINDOW: Final = 32
_PHONE_WINDOW_MARGIN: Final = 6
_DIGITS_ONLY: Final = re.compile(r"\D")
_WHITESPACE: Final = re.compile(r"\s")
# Anchors are \Z, not $: '$' also matches before a final line break, which made "my number\n07911 123456"
# look glued to the word "number".
_MASK: Final = "\x00"  # neither digit, separator, word character nor space: ends any run it touches


def may_contain_pii(text: str) -> bool:
    """Whether a matching copy holds anything a built-in kind needs: a digit, '@' or ':', or a spelled '@'."""
    return MAY_CONTAIN_PII.search(text) is not None or (
        ("(" in text or "[" in text or "{" in text or "<" in text) and SPELLED_AT_RE.search(text) is not None
    )


def may_contain_pii_ascii(text: str) -> bool:
    """``may_contain_pii`` for the matching copy of ASCII ``text``, read from ``text`` itself: the copy of
    ASCII differs only in spacing and dropped controls, so this spares most messages the copy."""
    return MAY_CONTAIN_PII.search(text) is not None or _SPELLED_AT_ASCII.search(text) is not None


def find_emails(text: str) -> Iterator[tuple[int, int]]:
    """E-mail addresses, local part to top-level domain, also with the '@' and dots spelled out."""
    if "@" in text:
        for match in EMAIL_RE.finditer(text):
            yield match.span()
    if SPELLED_AT_RE.search(text) is not None:
        for match in SPELLED_EMAIL_RE.finditer(text):
            yield match.span()


def find_credentials(text: str) -> Iterator[tuple[int, int]]:
    """The userinfo of ``scheme://user:pass@host``; the scheme and host stay, as context."""
    if "://" not in text or "@" not in text:
        return
    for match in CREDENTIALS_RE.finditer(text):
        yield match.span("userinfo")


def find_cards(text: str) -> Iterator[tuple[int, int]]:
    """Payment card numbers: 13-19 digits from a card network digit (2-6) that pass the Luhn check.

    Most random 16-digit ids fail Luhn; layout rules keep the rest out. The card finder reads runs of digit
    groups (``DIGIT_RUN_RE``) and accepts a window of one when it is

    - a whole segment (the run, a line of it, or what follows a card in it) joined by spaces or dashes
      only: the old rule, any grouping;
    - one unbroken group of digits, unless a dot touches it (a decimal fraction);
    - printed as cards are (fours with a shorter last group, or 4-6-5 / 4-6-4) with one separator, and not
      a window of a longer number grouped the same way, such as a transaction id ("5829 1734 0092 8812
      7731"): so a card is found next to an expiry date or a phone number ("12/26 4111 1111 1111 1111",
      "4111 1111 1111 1111 12/26").

    A line break or a tab ends a segment (the column of a pasted statement), though a card may run on over
    up to three of them. Letters may touch a card ("card4111111111111111"), but a run glued to letters on
    its left (an IBAN's "DE89 3704 ...") has no printed-layout start inside its first segment, only a
    separator change or an unbroken group.
    """
    for run in DIGIT_RUN_RE.finditer(text):
        if run.end() - run.start() < _CARD_DIGITS.start:
            continue
        groups = [m.span() for m in _DIGITS.finditer(text, run.start(), run.end())]
        if sum(end - start for start, end in groups) >= _CARD_DIGITS.start:
            glued = run.start() > 0 and text[run.start() - 1].isalpha()
            yield from _Run(text, groups).cards(glued=glued)


class _Run:
    """A run of digit groups: their offsets and lengths, and the separator after each but the last."""

    def __init__(self, text: str, groups: list[tuple[int, int]]) -> None:
        self.text = text
        self.groups = groups
        self.lengths = [end - start for start, end in groups]
        between = [text[a_end:b_start] for (_, a_end), (b_start, _) in pairwise(groups)]
        self.seps = [sep.strip() or " " for sep in between]  # a line break or tab separates like a space
        self.breaks = ["\n" in sep or "\t" in sep for sep in between]

    def cards(self, *, glued: bool) -> Iterator[tuple[int, int]]:
        """The longest card at each start, left to right, never two overlapping."""
        floor = 0  # where the current segment starts: the run, a line or column, the group after a card
        first = 0
        while first < len(self.groups):
            if first > floor and self.breaks[first - 1]:
                floor = first
            free = first == floor or not (glued and floor == 0)
            last = self._longest_card(floor, first, free=free)
            if last < 0:
                first += 1
                continue
            yield self.groups[first][0], self.groups[last][1]
            floor = first = last + 1

    def _longest_card(self, floor: int, first: int, *, free: bool) -> int:
        """The last group of the longest card that starts at group ``first``, or -1."""
        size = self.lengths[first]
        if self.text[self.groups[first][0]] not in _CARD_NETWORK_DIGITS or not (
            first == floor
            or size >= _CARD_DIGITS.start
            or (size == 4 and (free or self._separator_changes(first)))  # printed layouts start with 4
        ):
            return -1
        best = -1
        total = lines = 0
        for last in range(first, len(self.groups)):
            total += self.lengths[last]
            lines += last > first and self.breaks[last - 1]
            if total >= _CARD_DIGITS.stop or lines > _MAX_LINE_BREAKS_IN_CARD:
                break
            if total >= _CARD_DIGITS.start and self._is_card(floor, first, last, free=free):
                best = last
        return best

    def _separator_changes(self, first: int) -> bool:
        return 0 < first < len(self.seps) and self.seps[first - 1] != self.seps[first]

    def _is_card(self, floor: int, first: int, last: int, *, free: bool) -> bool:
        """Whether groups ``first..last`` are a card: cheap layout rules first, the checksum last."""
        inner = self.seps[first:last]
        ends_line = last == len(self.groups) - 1 or self.breaks[last]
        layout = self.lengths[first : last + 1]
        if first == floor and ends_line and _PLAIN_SEPARATORS.issuperset(inner):
            pass  # a whole segment, as the old rule judged it
        elif len(layout) == 1:
            if "." in self.seps[max(0, first - 1) : last + 1]:
                return False
        elif (
            not (free or self._separator_changes(first))
            or not self._printed(layout, inner)
            or (len(set(layout)) == 1 and self._continues(floor, first, last))
        ):
            return False
        start, end = self.groups[first][0], self.groups[last][1]
        return self.text[start] in _CARD_NETWORK_DIGITS and luhn.is_valid(
            _DIGITS_ONLY.sub("", self.text[start:end])
        )

    @staticmethod
    def _printed(layout: list[int], inner: list[str]) -> bool:
        """Laid out as cards are printed, with one kind of separator."""
        if len(set(inner)) > 1:
            return False
        return tuple(layout) in _ODD_CARD_LAYOUTS or (
            all(n == 4 for n in layout[:-1]) and 1 <= layout[-1] <= 4
        )

    def _continues(self, floor: int, first: int, last: int) -> bool:
        """Whether an evenly grouped window runs on, within its segment, into a neighbour group of the same
        size and separator, as a window of a longer number does; a neighbour that belongs to something
        written differently ("12/03/2024 4111 1111 1111 1111") does not count."""
        size, sep, seps, lengths = self.lengths[first], self.seps[first], self.seps, self.lengths
        before, after = first - 1, last + 1
        if (
            before >= floor
            and lengths[before] == size
            and seps[before] == sep
            and (before == floor or seps[before - 1] == sep)
        ):
            return True
        return (
            after < len(lengths)
            and not self.breaks[last]
            and lengths[after] == size
            and seps[last] == sep
            and (after == len(lengths) - 1 or self.breaks[after] or seps[after] == sep)
        )


def find_ibans(text: str) -> Iterator[tuple[int, int]]:
    """IBANs, compact or in groups of four, that pass mod-97 and their country's length and layout.

    Bank-specific national checks are left out on purpose: they reject valid IBANs of banks that are
    missing from the library's registry.
    """
    for match in IBAN_RE.finditer(text):
        candidate = match.group()
        start = match.start()
        # A grouped candidate may have swallowed a following word; drop trailing groups until it validates.
        while len(candidate) >= 15:
            if stdnum_iban.is_valid(_WHITESPACE.sub("", candidate), check_country=False):
                yield start, start + len(candidate)
                break
            cut = max(candidate.rfind(sep) for sep in " -\n\t")
            if cut < 0:
                break
            candidate = candidate[:cut]


def find_ips(text: str) -> Iterator[tuple[int, int]]:
    """IPv4 and IPv6 addresses that ``ipaddress`` accepts, skipping dotted version numbers."""
    if "." in text:
        for match in IPV4_RE.finditer(text):
            if _NUMBERING_BEFORE.search(text, max(0, match.start() - 12), match.start()):
                continue
            try:
                ipaddress.IPv4Address(match.group())
            except ValueError:
                continue
            yield match.span()
    if text.count(":") >= 2:
        for match in IPV6_RE.finditer(text):
            candidate = match.group()
            if candidate.endswith(":") and not candidate.endswith("::"):
                candidate = candidate[:-1]
            if not any(ch not in ":" for ch in candidate) or not _is_ipv6(candidate):
                continue
            yield match.start(), match.start() + len(candidate)


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with ``spans`` overwritten, same length, so that later finders neither see nor join them."""
    for start, end in spans:
        text = f"{text[:start]}{_MASK * (end - start)}{text[end:]}"
    return text


def find_phones(text: str, regions: Sequence[str]) -> Iterator[tuple[int, int]]:
    """Phone numbers valid in one of ``regions`` (or in any, when written with a country code).

    ``PhoneNumberMatcher`` is thorough but slow, so it only sees a small window around each digit run that
    is not a date or a reference number by its shape and context. Each window holds one run and no other
    digits, so a number is judged the same whatever sits next to it (which keeps redaction idempotent).
    """
    for hint in PHONE_HINT_RE.finditer(text):
        start, end = hint.span()
        if not _worth_matching(hint.group()) or _is_reference(text, start, end):
            continue
        lo, hi = _window(text, start, end)
        window = text[lo:hi]
        # With a country code the default region plays no part, so one try decides.
        for region in regions[:1] if hint.group().startswith("+") else regions:
            found = [
                span
                for m in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID)
                if (span := _plausible_phone(text, lo + m.start, lo + m.end)) is not None
            ]
            if found:
                yield from found
                break


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    """The digit run with a few characters of context each side ('+', brackets, letters), but no digits."""
    lo = start
    while lo > 0 and start - lo < _PHONE_WINDOW_MARGIN and not text[lo - 1].isdigit():
        lo -= 1
    hi = end
    while hi < len(text) and hi - end < _PHONE_WINDOW_MARGIN and not text[hi].isdigit():
        hi += 1
    return lo, hi


def _worth_matching(hint: str) -> bool:
    """Cheap shape checks that spare the matcher its eleven tries on dates, card-like runs and versions."""
    if _DATE_LIKE.match(hint) or _FOUR_DIGIT_GROUPS.fullmatch(hint):
        return False
    if sum(ch.isdigit() for ch in hint) > _MAX_PHONE_DIGITS:
        return False
    return not _is_dotted_version(hint)


def _is_dotted_version(raw: str) -> bool:
    """True for "122.0.6261.112", a browser version: dotted phone numbers have no one-digit groups."""
    return set(raw) <= _DIGITS_AND_DOTS and _ONE_DIGIT_DOTTED_GROUP.search(raw) is not None


def _plausible_phone(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Trim brackets and extensions off a matcher hit; turn down hits that are ids, times or versions."""
    raw = text[start:end]
    extension = _EXTENSION.search(raw)
    if extension is not None:  # an extension identifies no one on its own; keep it as context
        end, raw = end - len(extension.group()), raw[: extension.start()]
    if raw.startswith("(") and raw.count("(") > raw.count(")"):
        start, raw = start + 1, raw[1:]
    if raw.endswith(")") and raw.count(")") > raw.count("("):
        end, raw = end - 1, raw[:-1]
    if _is_reference(text, start, end) or _DATE_LIKE.match(raw):
        return None
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    if _GLUED_TO_WORD.search(before) or _TIME_AFTER.match(after) or _TIME_BEFORE.search(before):
        return None
    if _is_dotted_version(raw) or _NUMBERING_BEFORE.search(text, max(0, start - 12), start):
        return None
    return start, end


def _is_reference(text: str, start: int, end: int) -> bool:
    """A bare digit run (no '+', brackets or separators) introduced as an order, account or other id."""
    if not text[start:end].isdigit():
        return False
    before = text[max(0, start - _PHONE_CONTEXT_WINDOW) : start]
    last_reference = max((m.start() for m in _REFERENCE_WORD.finditer(before)), default=-1)
    if last_reference < 0:
        return False
    last_phone = max((m.start() for m in _PHONE_WORD.finditer(before)), default=-1)
    return last_phone < last_reference
