"""Regenerate ``formats.jsonl``: PII typed the way people type it, and ordinary messages typed the same way.

The second evaluation set, beside ``cases.jsonl``. Its values are written with no-break and narrow no-break
spaces, tabs, double spaces, dots, slashes and dashes between groups; zero-width and other invisible
characters inside; full-width and Arabic-Indic digits; glued to letters; split over two lines; e-mail
addresses with a full-width '@' or '(at)' / '(dot)'. Its hard negatives are banking messages written with
the same characters (amounts with no-break spaces, tab-separated statements, dotted dates and versions,
numbers on consecutive lines, "(at)" that is no address).

It was written after the detector's rules for these formats were settled, and scored once before any
further change (see ``bench/RESULTS.md``). Authoring is as in ``build_cases.py``: inline marks
``[[KIND:value]]`` (here a value may span a line break), offsets computed, every gold value checked on a
plain copy (invisible characters dropped, NFKC, digits as ASCII, '(at)' as '@'), and every card- or
IBAN-shaped stretch of a hard negative checked to fail its checksum. Output is deterministic.

    .venv/bin/python data/pii_eval/build_formats.py
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from pathlib import Path

import phonenumbers
from stdnum import iban, luhn

OUT = Path(__file__).with_name("formats.jsonl")
MARK = re.compile(r"\[\[([A-Z]+):(.+?)\]\]", re.DOTALL)
REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "AU", "CA", "IN")

NBSP, NNBSP, FIGSP, IDEOSP = "\u00a0", "\u202f", "\u2007", "\u3000"
ZWSP, ZWNJ, ZWJ, WJ, SHY, BOM = "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff"
EN_DASH, NB_HYPHEN = "\u2013", "\u2011"
G16, AMEX = (4, 4, 4, 4), (4, 6, 5)


def card(prefix: str, groups: tuple[int, ...], sep: str) -> str:
    """A Luhn-valid number: ``prefix`` completed with its check digit, grouped with ``sep``."""
    digits = prefix + luhn.calc_check_digit(prefix)
    assert len(digits) == sum(groups), (prefix, groups)
    parts, pos = [], 0
    for size in groups:
        parts.append(digits[pos : pos + size])
        pos += size
    return sep.join(parts)


def make_iban(country: str, bban: str, sep: str = " ") -> str:
    """An IBAN for ``bban`` with computed mod-97 check digits, in groups of four joined by ``sep``."""
    value = country + iban.calc_check_digits(country + "00" + bban) + bban
    return sep.join(value[i : i + 4] for i in range(0, len(value), 4))


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (U+FF01-U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def arabic_indic(text: str) -> str:
    return text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


def insert(text: str, at: tuple[int, ...], char: str) -> str:
    """``char`` inserted before each position in ``at`` (positions in ``text``)."""
    out, last = [], 0
    for pos in at:
        out.extend((text[last:pos], char))
        last = pos
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------- positives

FORMAT_POSITIVE: list[tuple[str, str]] = [
    # cards: separators
    ("card", f"My new card [[CARD:{card('454313009876543', G16, NBSP)}]] was declined at the supermarket."),
    ("card", f"Card number: [[CARD:{card('552461234567890', G16, NNBSP)}]] (copied from the app)"),
    ("card", f"card\t[[CARD:{card('401200003333444', G16, chr(9))}]]\tstatus: blocked"),
    ("card", f"Please check [[CARD:{card('492181234567123', G16, '  ')}]], the payment bounced twice."),
    ("card", f"I typed [[CARD:{card('453998765432101', G16, '.')}]] into your form and it froze."),
    ("card", f"The number on the letter is [[CARD:{card('510510510510510', G16, '/')}]], is that right?"),
    ("card", f"Card [[CARD:{card('601112345678901', G16, EN_DASH)}]] was cloned, I think."),
    ("card", f"Lost card [[CARD:{card('535522001234567', G16, ' - ')}]] last night in Lisbon"),
    ("card", f"card no. [[CARD:{card('402612345678912', G16, FIGSP)}]]"),
    ("card", f"Amex [[CARD:{card('37144963539843', AMEX, NBSP)}]] charged twice for one taxi"),
    ("card", f"Debit card [[CARD:{card('455612345678901', G16, NB_HYPHEN)}]] is not accepted online"),
    # cards: invisible characters inside
    ("card", f"Replacement card [[CARD:{card('455600123456789', G16, ZWSP)}]] hasn't arrived."),
    ("card", f"my card is [[CARD:{insert(card('402400712345678', G16, ''), (3, 9), ZWSP)}]] thanks"),
    ("card", f"Visa [[CARD:{insert(card('471699887766554', G16, ''), (8,), SHY)}]] please block it"),
    ("card", f"Number [[CARD:{card('542418012345678', G16, WJ)}]] was skimmed"),
    ("card", f"The card [[CARD:{card('460012345678123', G16, ZWNJ + ' ')}]] expired"),
    ("card", f"Card:{BOM}[[CARD:{card('453212349876543', G16, ' ')}]]"),
    # cards: other digits
    ("card", f"カード番号は[[CARD:{fullwidth(card('453201234567890', G16, IDEOSP))}]]です。"),
    ("card", f"Card: [[CARD:{fullwidth(card('540712345678901', G16, ''))}]]"),
    ("card", f"رقم البطاقة [[CARD:{arabic_indic(card('453212345678901', G16, ' '))}]] من فضلك"),
    # cards: glued to letters, split over lines, with other digits next to them
    ("card", f"Cardnumber[[CARD:{card('471612345678901', G16, '')}]]expires soon"),
    ("card", f"ref:VISA[[CARD:{card('448512345678901', G16, '')}]]"),
    ("card", f"pls block card[[CARD:{card('520012345678901', G16, ' ')}]]"),
    (
        "card",
        f"The first half is\n[[CARD:{card('451012345678901', G16, ' ')[:9]}\n"
        f"{card('451012345678901', G16, ' ')[10:]}]]\nand that's it.",
    ),
    (
        "card",
        f"card [[CARD:{card('532612345678901', G16, '-')[:10]}\r\n{card('532612345678901', G16, '-')[10:]}]]"
        " please block it",
    ),
    (
        "card",
        f"Card:\n[[CARD:{card('491612345678901', G16, '')[:8]}\n{card('491612345678901', G16, '')[8:]}]]",
    ),
    ("card", f"card [[CARD:{card('542523343010990', G16, ' ')}]] 09/27 is the one that was stolen"),
    ("card", f"Here: [[CARD:{card('491761234567890', G16, ' ')}]] 123 (the code on the back)"),
    ("card", f"exp 11/28 [[CARD:{card('455673758689912', G16, ' ')}]]"),
    # IBANs
    ("iban", f"Please send the refund to [[IBAN:{make_iban('GB', 'NWBK60161331926819', NBSP)}]] thanks"),
    ("iban", f"IBAN: [[IBAN:{make_iban('DE', '370400440532013000', '-')}]]"),
    ("iban", f"My IBAN is [[IBAN:{make_iban('FR', '20041010050500013M02606', '  ')}]]."),
    (
        "iban",
        f"Account [[IBAN:{make_iban('NL', 'ABNA0417164300', ' ')[:9]}\n"
        f"{make_iban('NL', 'ABNA0417164300', ' ')[10:]}]] for the salary",
    ),
    ("iban", f"iban [[IBAN:{make_iban('ES', '21000418450200051332', '-').lower()}]]"),
    (
        "iban",
        f"Transfer to [[IBAN:{insert(make_iban('IE', 'AIBK93115212345678', ''), (4, 12), ZWSP)}]] failed",
    ),
    ("iban", f"IBAN [[IBAN:{make_iban('IT', 'X0542811101000000123456', NNBSP)}]] for rent"),
    ("iban", f"IBAN\t[[IBAN:{fullwidth(make_iban('BE', '539007547034', ' '))}]]"),
    ("iban", f"Please use [[IBAN:{make_iban('AT', '1904300234573201', chr(9))}]] from now on"),
    # e-mail addresses
    ("email", "Contact me at [[EMAIL:maria.lopez\uff20example.com]] please"),
    ("email", "email: [[EMAIL:tom\ufe6bexample.org]]"),
    ("email", "my email is [[EMAIL:ana.silva(at)example.pt]] since last year"),
    ("email", "write to [[EMAIL:kevin.obrien(at)example(dot)ie]] not the old one"),
    ("email", "reach me: [[EMAIL:s.k [at] example [dot] co [dot] uk]] thanks"),
    ("email", "[[EMAIL:li.na (at) example (dot) cn]] is my address"),
    ("email", "Address: [[EMAIL:j.smith{at}example{dot}com]]"),
    ("email", "Send it to [[EMAIL:PAUL.MEYER(AT)EXAMPLE.DE]]"),
    ("email", f"[[EMAIL:{fullwidth('yuki.tanaka@example.jp')}]]にメールしてください"),
    ("email", f"mail: [[EMAIL:hans{ZWSP}.weber@example.de]]"),
    ("email", "address <[[EMAIL:r.gupta<at>example.in]]>"),
    ("email", "Email me on [[EMAIL:claire.dubois @ example.fr]]"),
    ("email", f"Email:{NBSP}[[EMAIL:noah.berg@example.se]]"),
    # phones and IPs
    ("phone", f"call me on [[PHONE:+44{NBSP}7400{NBSP}123456]] after work"),
    ("phone", f"tel: [[PHONE:{fullwidth('020 7946 0123')}]]"),
    ("phone", f"phone\t[[PHONE:(202){NBSP}555-0163]]"),
    ("phone", f"Mobile: [[PHONE:+49{NNBSP}151{NNBSP}23456789]]"),
    ("phone", "My number\n[[PHONE:07400 654321]]\nThanks"),
    ("ip", f"login from [[IP:{fullwidth('198.51.100.23')}]] wasn't me"),
    ("ip", f"IP{NBSP}[[IP:203.0.113.77]] is blocked"),
    # several
    (
        "multi",
        f"Card [[CARD:{card('455612340987654', G16, NBSP)}]] and email [[EMAIL:x.y(at)example(dot)com]]",
    ),
    (
        "multi",
        f"IBAN\n[[IBAN:{make_iban('GB', 'BARC20035312345678', NBSP)}]]\nPhone\n[[PHONE:+44 20 7946 0456]]",
    ),
]

# ---------------------------------------------------------------- hard negatives: nothing here is PII

FORMAT_NEGATIVE = [
    f"I was charged 1{NBSP}234,56 € twice.",
    f"Balance:\t1{NNBSP}250.00 EUR",
    f"Statement 01.02.2024 {EN_DASH} 29.02.2024 is missing.",
    f"Transfer on 2024/03/12 at 10:30{NBSP}am failed.",
    "Date\tAmount\tRef\n12/03\t49.99\t88412\n13/03\t12.50\t88413",
    "Balance: 1250.00\nPending: 49.99\nAvailable: 1200.01",
    f"注文番号 {fullwidth('2024031200173')} が届きません",
    "App 5.12.3 (build 2024.03.12.1) crashes",
    "Windows 10.0.22631.3155 and Chrome 122.0.6261.112",
    "I'll be (at) the branch at 3pm.",
    "meet [at] 5, ok?",
    "support(at)bank is what the letter says",
    "Transaction 5829.1734.0092.8812.7731 was reversed",
    "Ref:\n2024 0312 8841 2007",
    f"Sort code 20-00-00{NBSP}account 55779911",
    f"card ending{NBSP}1234",
    "•••• •••• •••• 4242 was charged",
    f"Phone lines open 9:00{EN_DASH}17:30, Mon{EN_DASH}Fri",
    f"Order{ZWSP} #A-10293847 never came",
    f"Tracking{NBSP}1Z999AA10123456784",
    "Amounts: 49.99 / 12.50 / 100.00 / 3.20",
    f"Invoice INV{NB_HYPHEN}2024{NB_HYPHEN}000123 is wrong",
    f"Points: 12{NBSP}450, tier 2",
    "My PIN reset code was 4 8 2 9 1 3",
    "Due 2024-04-01\npaid 2024-03-28\nref 88412",
    "ISBN 978-3-16-148410-0 for the book voucher",
    "Lot 2024/03/12/001/4471 recalled?",
    "(dot) and (at) are not words I use",
    f"GB82{NBSP}WEST{NBSP}1234{NBSP}5698{NBSP}7654{NBSP}33 was rejected",
    "IBAN ES00-0000-0000 looks wrong",
    "Error 0x80070005 at 10:45",
    f"Room 4B,{NBSP}floor{NBSP}3, desk 12",
    f"Version {fullwidth('2.3.1')} of the app",
    "Items:\n2 cards\n3 statements\n1 letter",
    "Qty\n4\n5\n6\n7\n8\n9\n2\n3\n4\n5\n6\n7\n8",
    f"Fees{NBSP}{NBSP}{NBSP}3.50\nTotal{NBSP}{NBSP}52.49",
    "Account ref 3301 2298 4410 7730 5521 (old system)",
    f"Limits: ATM 500{NBSP}/ day, card 2{NBSP}000{NBSP}/ month",
    "Call-back slot 14.30-15.00 on 12.04.",
    f"Case{NNBSP}20240312001{NNBSP}is still open",
    "Coordinates 51.5074, -0.1278 for the branch",
    f"{fullwidth('4111 1111 1111 1112')} was refused, is that a valid card?",
    f"Booking ref QX7{EN_DASH}88A{EN_DASH}21",
    "Reading 004512\n004513\n004517 on the meter",
    f"Cheque{NBSP}000123 bounced",
]


# ---------------------------------------------------------------- building and checking

_IGNORABLE = {0x034F, 0x180E, 0xFEFF} | set(range(0xFE00, 0xFE10))
_SPELLED = re.compile(r"\s*[(\[{<]\s*(at|dot)\s*[)\]}>]\s*|\s*@\s*", re.IGNORECASE)


def plain(value: str) -> str:
    """``value`` as its checks read it: invisible characters dropped, NFKC, digits as ASCII."""
    kept = "".join(c for c in value if unicodedata.category(c) not in ("Cf", "Cc") or c in "\t\n\r")
    kept = "".join(c for c in kept if ord(c) not in _IGNORABLE)
    folded = unicodedata.normalize("NFKC", kept)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in folded)


def _parse(marked: str) -> tuple[str, list[dict[str, object]]]:
    text_parts: list[str] = []
    entities: list[dict[str, object]] = []
    cursor = length = 0
    for match in MARK.finditer(marked):
        plain_part = marked[cursor : match.start()]
        text_parts.append(plain_part)
        length += len(plain_part)
        kind, value = match.group(1), match.group(2)
        entities.append({"kind": kind, "start": length, "end": length + len(value)})
        text_parts.append(value)
        length += len(value)
        cursor = match.end()
    text_parts.append(marked[cursor:])
    return "".join(text_parts), entities


def _check(kind: str, value: str) -> None:
    """Gold values must be the real thing once the formatting is taken away."""
    assert value == value.strip(), repr(value)
    clean = plain(value)
    if kind == "CARD":
        digits = re.sub(r"\D", "", clean)
        assert 13 <= len(digits) <= 19, value
        assert luhn.is_valid(digits), value
    elif kind == "IBAN":
        assert iban.is_valid(re.sub(r"\s", "", clean), check_country=False), value
    elif kind == "PHONE":
        number = re.sub(r"\s+", " ", clean)
        assert any(phonenumbers.is_valid_number(phonenumbers.parse(number, r)) for r in REGIONS), value
    elif kind == "IP":
        ipaddress.ip_address(clean)
    elif kind == "EMAIL":
        address = _SPELLED.sub(lambda m: "." if m.group(1) and m.group(1).lower() == "dot" else "@", clean)
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s.]+", address), (value, address)
    else:
        raise AssertionError(f"unknown kind {kind}")


def _check_negative(text: str) -> None:
    """Every group-aligned window of 13-19 digits that starts like a card fails Luhn; IBAN shapes fail
    mod-97 (the windows a card finder could choose, however the groups are separated)."""
    clean = plain(text)
    for run in re.finditer(r"\d+(?:(?:\s*[-./]\s*|\s+)\d+)*", clean):
        groups = re.findall(r"\d+", run.group())
        for i in range(len(groups)):
            for j in range(i, len(groups)):
                digits = "".join(groups[i : j + 1])
                if 13 <= len(digits) <= 19 and digits[0] in "23456":
                    assert not luhn.is_valid(digits), (text, digits)
    for run in re.findall(r"[A-Z]{2}\d{2}(?:[\s-]?[A-Z0-9]{2,4}){3,8}", clean, re.IGNORECASE):
        assert not iban.is_valid(re.sub(r"[\s-]", "", run), check_country=False), text


def build() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for category, marked in FORMAT_POSITIVE:
        text, entities = _parse(marked)
        for ent in entities:
            start, end = ent["start"], ent["end"]
            assert isinstance(start, int)
            assert isinstance(end, int)
            _check(str(ent["kind"]), text[start:end])
        cases.append(
            {
                "id": f"fp{len(cases) + 1:03d}",
                "category": f"format_{category}",
                "text": text,
                "entities": entities,
            }
        )
    for text in FORMAT_NEGATIVE:
        assert "[[" not in text
        _check_negative(text)
        cases.append(
            {"id": f"fn{len(cases) + 1:03d}", "category": "format_negative", "text": text, "entities": []}
        )
    return cases


def main() -> None:
    cases = build()
    with OUT.open("w", encoding="utf-8", newline="\n") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    n_pos = sum(1 for c in cases if c["entities"])
    print(f"wrote {len(cases)} cases ({n_pos} with PII, {len(cases) - n_pos} hard negatives) to {OUT}")


if __name__ == "__main__":
    main()
