"""PII typed the way people really type it: odd spaces, invisible characters, full-width digits, spelled-out
e-mail addresses, numbers split over lines. Detection reads a normalized copy; redaction must replace the
original characters, so no digit, letter or invisible character of a value survives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpilot.data.pii import CustomPattern, PiiRedactor
from deskpilot.data.text import is_matching_form, normalize_for_matching

CARD = "4111 1111 1111 1111"
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor()


# ---------------------------------------------------------------- the matching copy and its offset map


@pytest.mark.parametrize(
    ("text", "copy"),
    [
        ("plain text, one space", "plain text, one space"),
        ("a\u00a0b\u202fc\u3000d\u2007e", "a b c d e"),
        ("two  spaces \t and a tab", "two spaces\tand a tab"),
        ("tab\t\tand line \t\n break", "tab\tand line\nbreak"),
        ("line\r\n\r\nbreak  \n x", "line\nbreak\nx"),
        ("zero\u200bwidth\u2060joined\ufeff\u00ad", "zerowidthjoined"),
        ("a \u200b b", "a b"),
        ("\uff14\uff11\uff11\uff11 \u0664\u0661 \u096a\u0967", "4111 41 41"),
        ("jane\uff20example\uff0ecom", "jane@example.com"),
        ("4111\u20131111\u22121111\u2044", "4111-1111-1111/"),
        ("Ju\u0308rgen", "J\u00fcrgen"),
        ("\ufb01le", "file"),
    ],
)
def test_matching_copy(text: str, copy: str) -> None:
    assert normalize_for_matching(text).text == copy


def test_plain_ascii_is_its_own_copy() -> None:
    assert is_matching_form("Card 4111 1111 1111 1111 declined, mail a@example.com")
    assert normalize_for_matching("x y").unchanged
    for text in ("a  b", "a\tb", "a\nb", "caf\u00e9", "a\u200bb", "\x07"):
        assert not is_matching_form(text), text


def test_offsets_map_back_over_what_was_dropped_or_folded() -> None:
    text = "card \u200b4111\u00a01111\u200b1111\t\t1111\u200b ok"
    copy = normalize_for_matching(text)
    start = copy.text.index("4111")
    end = start + len("4111 11111111\t1111")
    assert copy.text[start:end] == "4111 11111111\t1111"
    o_start, o_end = copy.to_original(start, end)
    assert text[o_start:o_end] == "4111\u00a01111\u200b1111\t\t1111"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1 .@\t\n\u00a0\u200b\uff11\u0301\ufb01\u2013")), max_size=30))
def test_offset_map_is_monotonic_and_in_bounds(text: str) -> None:
    copy = normalize_for_matching(text)
    previous_end = 0
    for i in range(len(copy.text)):
        start, end = copy.to_original(i, i + 1)
        assert 0 <= start < end <= len(text)
        assert start >= previous_end or copy.to_original(i - 1, i) == (start, end)  # one unit, several chars
        previous_end = end
    if copy.text:
        start, end = copy.to_original(0, len(copy.text))
        assert text[:start].strip("\u200b \t\n\u00a0") == ""
        assert text[end:].strip("\u200b \t\n\u00a0") == ""


# ---------------------------------------------------------------- the families of the finding


@pytest.mark.parametrize(
    "card",
    [
        CARD.replace(" ", "\u00a0"),  # no-break space
        CARD.replace(" ", "\u202f"),  # narrow no-break space
        CARD.replace(" ", "\u2007"),  # figure space
        CARD.replace(" ", "\t"),
        CARD.replace(" ", "  "),
        CARD.replace(" ", "."),
        CARD.replace(" ", "/"),
        CARD.replace(" ", " - "),
        CARD.replace(" ", "\u2013"),  # en dash
        CARD.replace(" ", "\u200b"),  # zero-width space
        "4\u200b111111111111111",
        "4111\u200b\u00a01111\u200d1111\u20601111",
        "41\u00ad11111111111111",  # soft hyphen
        CARD.translate(FULLWIDTH),
        CARD.replace(" ", "").translate(FULLWIDTH),
        CARD.translate(ARABIC_INDIC),
        "4111 1111\n1111 1111",
        "4111 1111\r\n1111 1111",
        "4111-1111-\n1111-1111",
        "3782 822463 10005",
        "3782.822463.10005",
    ],
)
def test_card_in_other_formats_is_redacted_whole(redactor: PiiRedactor, card: str) -> None:
    assert redactor.redact(f"my card {card} was declined") == "my card <CARD> was declined"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("card4111111111111111declined", "card<CARD>declined"),
        ("CardNo:4111111111111111", "CardNo:<CARD>"),
        ("VISA4111111111111111", "VISA<CARD>"),
        (f"card {CARD} 12/26", "card <CARD> 12/26"),
        (f"card {CARD} 12/26 123", "card <CARD> 12/26 123"),
        (f"{CARD} 123", "<CARD> 123"),
        ("4111111111111111 123", "<CARD> 123"),
        (f"exp 12/26 {CARD}", "exp 12/26 <CARD>"),
        (f"on 12/03/2024 {CARD}", "on 12/03/2024 <CARD>"),
        ("4111111111111111 5555555555554444", "<CARD> <CARD>"),
        ("4111111111111111/5555555555554444", "<CARD>/<CARD>"),
        ("+44 20 7946 0958/4111 1111 1111 1111", "<PHONE>/<CARD>"),
        ("+44 20 7946 0958\n4111 1111 1111 1111", "<PHONE>\n<CARD>"),
        ("+44 20 7946 0958\t4111 1111 1111 1111", "<PHONE>\t<CARD>"),
        ("paid 12.50 on 12/03/24 4111 1111 1111 1111", "paid 12.50 on 12/03/24 <CARD>"),
        ("4111 1111 1111 1111\n4111 1111 1111 1111 12/26", "<CARD>\n<CARD> 12/26"),
        ("jane@example.com4111111111111111", "<EMAIL><CARD>"),
        ("4111111111111111GB82WEST12345698765432", "<CARD><IBAN>"),
    ],
)
def test_card_next_to_letters_or_other_numbers(redactor: PiiRedactor, text: str, redacted: str) -> None:
    assert redactor.redact(text) == redacted


def test_a_card_after_many_other_digits_in_one_run_is_found(redactor: PiiRedactor) -> None:
    redacted = redactor.redact(f"07911 123456 12/03/2024 {CARD}")
    assert redacted.endswith(" <CARD>")
    assert "4111" not in redacted


def test_zero_width_characters_inside_a_value_are_replaced_with_it(redactor: PiiRedactor) -> None:
    text = "card \u200b4\u200b1\u200b1\u200b1 1111 1111 1111\u200b."
    assert redactor.redact(text) == "card \u200b<CARD>\u200b."
    assert redactor.find(text)[0].start == text.index("4")


@pytest.mark.parametrize(
    "iban",
    [
        "GB82\u00a0WEST\u00a01234\u00a05698\u00a07654\u00a032",
        "GB82-WEST-1234-5698-7654-32",
        "GB82  WEST  1234  5698  7654  32",
        "GB82\tWEST\t1234\t5698\t7654\t32",
        "GB82 WEST 1234\n5698 7654 32",
        "GB82\u200bWEST12345698765432",
        "ＧＢ８２ ＷＥＳＴ １２３４ ５６９８ ７６５４ ３２",
        "gb82-west-1234-5698-7654-32",
    ],
)
def test_iban_in_other_formats_is_redacted_whole(redactor: PiiRedactor, iban: str) -> None:
    assert redactor.redact(f"IBAN {iban} thanks") == "IBAN <IBAN> thanks"


@pytest.mark.parametrize(
    "email",
    [
        "jane.doe\uff20example.com",
        "jane.doe\ufe6bexample.com",
        "ｊａｎｅ．ｄｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "jane.doe(at)example.com",
        "jane.doe(at)example(dot)com",
        "jane.doe (at) example (dot) com",
        "jane.doe [at] example [dot] com",
        "jane(dot)doe{AT}example{DOT}co{DOT}uk",
        "jane.doe <at> example.com",
        "jane\u200b.doe@exa\u200bmple.com",
        "jane.doe@example\u3002com".replace("\u3002", "\uff0e"),
    ],
)
def test_email_in_other_formats_is_redacted_whole(redactor: PiiRedactor, email: str) -> None:
    assert redactor.redact(f"write to {email} please") == "write to <EMAIL> please"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("call \uff10\uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18", "call <PHONE>"),
        ("tel\u00a0+44\u00a020\u00a07946\u00a00958", "tel\u00a0<PHONE>"),
        ("my number\n07911 123456", "my number\n<PHONE>"),  # '$' once matched before the line break
        ("call me\n+44 20 7946 0958\nthanks", "call me\n<PHONE>\nthanks"),
        ("from \uff11\uff19\uff12\uff0e\uff10\uff0e\uff12\uff0e\uff11", "from <IP>"),
        ("https://admin:pa\u200bss@example.com", "https://<CREDENTIALS>@example.com"),
    ],
)
def test_other_kinds_in_other_formats(redactor: PiiRedactor, text: str, redacted: str) -> None:
    assert redactor.redact(text) == redacted


# ---------------------------------------------------------------- what the wider separators must not catch


@pytest.mark.parametrize(
    "text",
    [
        "Build 6.0.19045.2965 shows the error.",
        "version 4.1.0.12 and 10.0.22631.3155",
        "Statement 01/02/2024 - 29/02/2024 and 01.03.2024",
        "Transaction id 5829 1734 0092 8812 7731.",
        "Transaction id 5829.1734.0092.8812.7731",
        "ID 2024 4111 1111 1111 1111 0000",
        "DE89 3704 0044 0532 0130 01 was rejected.",
        "score 0.4111111111111111 is odd",
        "Tracking: 9400 1000 0000 0000 0000 00",
        "Sort code 20-00-00, account 55779911, ref 2024/03/12/0001",
        "Paid 1.234.567,89 EUR on 12.03.2024",
        "call 202 555 0143 or 202 555 0199",
        "meet (at) the branch, (dot) your i's",
        "Follow us @bank (at) 3pm",
        "Order 123\n4567\n8901 arrived",
    ],
)
def test_wider_separators_leave_ordinary_numbers_alone(redactor: PiiRedactor, text: str) -> None:
    assert [(s.kind, text[s.start : s.end]) for s in redactor.find(text) if s.kind != "PHONE"] == []


def test_custom_patterns_see_the_text_as_typed_and_the_matching_copy() -> None:
    redactor = PiiRedactor(
        custom_patterns=[CustomPattern("ticket", r"TCK-\d+"), CustomPattern("tab", r"\tX")]
    )
    assert redactor.redact("TCK-\u200b42 and TCK-\uff14\uff12") == "<TICKET> and <TICKET>"
    assert redactor.redact("a\tX b") == "a<TAB> b"


_FRAGMENTS = [
    CARD.replace(" ", "\u00a0"),
    CARD.replace(" ", "\u200b"),
    CARD.translate(FULLWIDTH),
    "4111 1111\n1111 1111",
    "4111.1111.1111.1111",
    "GB82-WEST-1234-5698-7654-32",
    "jane(at)example(dot)com",
    "jane\uff20example.com",
    "+44\u00a020\u00a07946\u00a00958",
    "12/26",
    "123",
    "<CARD>",
    "\u200b",
    "\u00a0",
    "\n",
    "  ",
    "e\u0301",
    "and",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=8), st.sampled_from([" ", "\n", "\t", " \n ", "\u00a0"])
)
def test_redaction_of_other_formats_is_idempotent(fragments: list[str], separator: str) -> None:
    redactor = PiiRedactor()
    text = separator.join(fragments)
    once = redactor.redact(text)
    assert redactor.redact(once) == once
