"""Candidate patterns and validators for the built-in PII kinds.

Each ``find_*`` function yields ``(start, end)`` offsets of one kind. Regexes only propose candidates; a
checksum or a parser (Luhn, mod-97, ``ipaddress``) decides, because support text is full of digit strings
that look like PII and are not: order numbers, amounts, dates, versions. The redactor in ``pii.py`` runs
these, resolves overlaps and writes placeholders.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
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

# Every built-in kind needs a digit, an '@' or a ':'; text with none of them skips all built-in work.
MAY_CONTAIN_PII: Final = re.compile(r"[\d@:]")

# RFC 5322 also allows '/' in a local part; leaving it out keeps "https://user@host" and paths out of e-mail.
_LOCAL_CHARS: Final = r"[\w!#$%&'*+=?^`{|}~-]"
EMAIL_RE: Final = re.compile(
    r"(?<![\w!#$%&'*+=?^`{|}~.-])"  # start at the beginning of the local part, never inside it
    rf"{_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)

# A userinfo may hold an unescaped '@' in a careless password, so it runs to the last '@' before the host.
CREDENTIALS_RE: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<userinfo>[^\s/?#]+)@(?=[\w\[])")

# 13-19 digits, single spaces or dashes between them, starting with a card network digit (2-6), and not
# part of a longer grouped number such as a transaction id.
CARD_RE: Final = re.compile(r"(?<![\w.])(?<!\d[ -])[2-6](?:[ -]?\d){12,18}(?![ -]?\d|\w|\.\d)")

IBAN_RE: Final = re.compile(
    r"\b[A-Z]{2}\d{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?|[A-Z0-9]{11,30})\b", re.IGNORECASE
)

IPV4_RE: Final = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6_RE: Final = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)"
)
# "v1.2.3.4", "build 4.1.0.12", "section 3.2.1.4": dotted numbers that name a release or a clause, not a host.
_NUMBERING_BEFORE: Final = re.compile(
    r"(?i)(?:\bv|\bver|version|build|release|firmware|patch|section|clause|rule|article|chapter|§)\W{0,2}$"
)

# Seven or more digits with light separators: the only text worth handing to the (slow) phone matcher.
# A German-style "030/1234567" area code and an "x12" / "ext. 12" extension ride along.
PHONE_HINT_RE: Final = re.compile(
    r"(?:\b0\d{1,4}/ ?)?\+?\d(?:[ .()\u00a0-]{0,3}\d){6,}(?:\s?(?:[xX]|[eE]xt\.?|[eE]xtension)\s?\d{1,6}\b)?"
)
_DATE_LIKE: Final = re.compile(r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)")
# "INV-2024-000123", "ORD_5551234567": digits glued to a word are part of an identifier.
_GLUED_TO_WORD: Final = re.compile(r"[^\W\d_][-_/]?$")
# Card- and IBAN-shaped groups of four, and more digits than any dialled number: not worth the matcher.
_FOUR_DIGIT_GROUPS: Final = re.compile(r"\d{4}(?:[ -]\d{4}){3,}(?:[ -]\d{1,4})?")
_MAX_PHONE_DIGITS: Final = 17
_TIME_AFTER: Final = re.compile(r":\d")
_TIME_BEFORE: Final = re.compile(r"\d:$")
_ONE_DIGIT_DOTTED_GROUP: Final = re.compile(r"(?:^|\.)\d(?:\.|$)")
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
_EXTENSION: Final = re.compile(r"(?i)[\s,;]*(?:ext\.?|extension|x|#)\s*\d{1,6}$")
_PHONE_CONTEXT_WINDOW: Final = 32
_PHONE_WINDOW_MARGIN: Final = 6
_MASK: Final = "\x00"  # neither digit, separator, word character nor space: ends any run it touches


def find_emails(text: str) -> Iterator[tuple[int, int]]:
    """E-mail addresses, local part to top-level domain."""
    if "@" not in text:
        return
    for match in EMAIL_RE.finditer(text):
        yield match.span()


def find_credentials(text: str) -> Iterator[tuple[int, int]]:
    """The userinfo of ``scheme://user:pass@host``; the scheme and host stay, as context."""
    if "://" not in text or "@" not in text:
        return
    for match in CREDENTIALS_RE.finditer(text):
        yield match.span("userinfo")


def find_cards(text: str) -> Iterator[tuple[int, int]]:
    """Payment card numbers that pass the Luhn check; most random 16-digit ids fail it."""
    for match in CARD_RE.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        if luhn.is_valid(digits):
            yield match.span()


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
            if stdnum_iban.is_valid(candidate, check_country=False):
                yield start, start + len(candidate)
                break
            cut = candidate.rfind(" ")
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
