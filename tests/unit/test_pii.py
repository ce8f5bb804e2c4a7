"""PII detection and redaction: each kind, placeholders, overlaps, idempotence, custom patterns, negatives."""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpilot.data.pii import BUILTIN_KINDS, CustomPattern, PiiRedactor, PiiSpan
from deskpilot.errors import PiiConfigError


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor()


def spans_of(redactor: PiiRedactor, text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in redactor.find(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Reply to jane.doe@example.com please", "EMAIL", "jane.doe@example.com"),
        ("mail tom.baker+refunds@mail.example.co.uk.", "EMAIL", "tom.baker+refunds@mail.example.co.uk"),
        ("mailto:ops@example.org", "EMAIL", "ops@example.org"),
        ("Call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
        ("cell (202) 555-0143", "PHONE", "(202) 555-0143"),
        ("ring 07911 123456 pls", "PHONE", "07911 123456"),
        ("Tel +49 (0)30 1234 5678", "PHONE", "+49 (0)30 1234 5678"),
        ("us: 202.555.0178", "PHONE", "202.555.0178"),
        ("card 4111 1111 1111 1111 declined", "CARD", "4111 1111 1111 1111"),
        ("card 5555-5555-5555-4444.", "CARD", "5555-5555-5555-4444"),
        ("amex 378282246310005", "CARD", "378282246310005"),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN", "GB82 WEST 1234 5698 7654 32"),
        ("to DE89370400440532013000", "IBAN", "DE89370400440532013000"),
        ("from 203.0.113.195 at night", "IP", "203.0.113.195"),
        ("ipv6 2001:db8:85a3::8a2e:370:7334 blocked", "IP", "2001:db8:85a3::8a2e:370:7334"),
        ("mapped ::ffff:192.0.2.128 here", "IP", "::ffff:192.0.2.128"),
        ("https://admin:Sup3r@portal.example.com/x", "CREDENTIALS", "admin:Sup3r"),
    ],
)
def test_each_kind_is_found_with_exact_span(redactor: PiiRedactor, text: str, kind: str, value: str) -> None:
    assert spans_of(redactor, text) == [(kind, value)]


def test_placeholders_are_typed_and_keep_context(redactor: PiiRedactor) -> None:
    text = (
        "Email jane@example.com, call +1-202-555-0187, card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, from 192.0.2.44 via ftp://bob:pw@files.example.net"
    )
    assert redactor.redact(text) == (
        "Email <EMAIL>, call <PHONE>, card <CARD>, IBAN <IBAN>, from <IP> via ftp://<CREDENTIALS>@files.example.net"
    )


def test_counts_by_kind(redactor: PiiRedactor) -> None:
    redacted, counts = redactor.redact_with_counts("a@example.com b@example.com 4111111111111111")
    assert redacted == "<EMAIL> <EMAIL> <CARD>"
    assert counts == Counter({"EMAIL": 2, "CARD": 1})


def test_redact_many_keeps_order_and_sums_counts(redactor: PiiRedactor) -> None:
    texts, counts = redactor.redact_many(["hi", "x@example.com", "10.0.0.1 and y@example.com"])
    assert texts == ["hi", "<EMAIL>", "<IP> and <EMAIL>"]
    assert counts == Counter({"EMAIL": 2, "IP": 1})


def test_find_returns_sorted_non_overlapping_spans(redactor: PiiRedactor) -> None:
    text = "x@example.com 192.0.2.1 +44 20 7946 0958 a@example.org"
    spans = redactor.find(text)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    assert all(a.end <= b.start for a, b in pairwise(spans))
    assert spans[0] == PiiSpan("EMAIL", 0, 13)


def test_url_credentials_win_over_an_email_inside_the_authority(redactor: PiiRedactor) -> None:
    text = "https://john:secret@example.com/path and https://token123@git.example.com/repo"
    assert redactor.redact(text) == (
        "https://<CREDENTIALS>@example.com/path and https://<CREDENTIALS>@git.example.com/repo"
    )


def test_overlap_keeps_the_longer_span_once() -> None:
    redactor = PiiRedactor(custom_patterns=[CustomPattern("digits4", r"\d{4}")])
    assert redactor.redact("card 4111 1111 1111 1111 pin 1234") == "card <CARD> pin <DIGITS4>"


def test_custom_pattern_wins_a_tie_with_a_builtin() -> None:
    redactor = PiiRedactor(custom_patterns=[CustomPattern("staff_email", r"[a-z.]+@corp\.example\.com")])
    assert redactor.redact("ask ann.lee@corp.example.com or bo@example.com") == (
        "ask <STAFF_EMAIL> or <EMAIL>"
    )


def test_ipv6_with_embedded_ipv4_is_one_span(redactor: PiiRedactor) -> None:
    assert spans_of(redactor, "::ffff:192.0.2.128") == [("IP", "::ffff:192.0.2.128")]


@pytest.mark.parametrize(
    "text",
    [
        "Email jane@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111",
        "IBAN GB82 WEST 1234 5698 7654 32 and https://u:p@example.com",
        "<EMAIL> wrote from <IP> about <CARD>",
        "",
    ],
)
def test_redaction_is_idempotent(redactor: PiiRedactor, text: str) -> None:
    once = redactor.redact(text)
    assert redactor.redact(once) == once


def test_placeholders_are_never_matched_even_by_custom_patterns() -> None:
    redactor = PiiRedactor(custom_patterns=[CustomPattern("shout", r"[A-Z]{4,}")])
    assert redactor.redact("HELLO <EMAIL> <SHOUT>") == "<SHOUT> <EMAIL> <SHOUT>"


_FRAGMENTS = [
    "jane@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "192.0.2.1",
    "2001:db8::1",
    "https://a:b@example.com",
    "order 4567890123",
    "£1,234.56",
    "12/03/2024",
    "v1.2.3",
    "card ending 1234",
    "<EMAIL>",
    " ",
    ", ",
    "and",
    "ñ日",
    "ftp://u:p@10.0.0.1",
    "DE89370400440532013000",
    "07911 123456",
    "(202) 555-0143",
    "fe80::1",
    "10:45",
    "ref",
    "call",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=8), st.sampled_from([" ", ", ", "\n", "/"]))
def test_idempotent_on_mixed_fragments(fragments: list[str], separator: str) -> None:
    redactor = PiiRedactor()
    text = separator.join(fragments)
    once = redactor.redact(text)
    assert redactor.redact(once) == once


@pytest.mark.parametrize(
    "text",
    [
        "Order #A-10293847 still hasn't shipped.",
        "My order number is 4567890123.",
        "transaction id 5829173400 was reversed",
        "Transaction TXN-20240312-88412 failed.",
        "I was charged £1,234.56 instead of $20.",
        "Refund of €1.234,56 on 12/03/2024.",
        "Statement for 2024-03-12 at 14:30:15.",
        "Appointment moved to 12-03-2024 10:30.",
        "Is 4111 1111 1111 1112 valid?",
        "Transaction id 5829 1734 0092 8812 7731.",
        "My card ending 1234 is blocked.",
        "Card **** **** **** 1111 declined.",
        "Code 482913 expired after 3 tries.",
        "App version 5.12.3 on iOS 17.4.1.",
        "version 1.2.3.4 of the client, build 10.0.19045.2965",
        "Chrome 122.0.6261.112",
        "Invoice INV-2024-000123 is wrong.",
        "MAC 00:1A:2B:3C:4D:5E and a time 10:30:45.",
        "std::vector and Note: fine",
        "Follow @DeskPilotHelp, meet @ 3pm",
        "IP 256.1.1.1 and 999.10.10.10 are invalid",
        "See https://www.example.com/help and http://example.com:8080/status",
    ],
)
def test_hard_negatives_are_left_alone(redactor: PiiRedactor, text: str) -> None:
    assert redactor.find(text) == []


def test_luhn_failures_are_not_cards(redactor: PiiRedactor) -> None:
    assert redactor.find("4111111111111111") == [PiiSpan("CARD", 0, 16)]
    assert redactor.find("4111111111111112") == []
    assert redactor.find("5555 5555 5555 4445") == []


def test_mod97_failures_are_not_ibans(redactor: PiiRedactor) -> None:
    assert spans_of(redactor, "GB82WEST12345698765432") == [("IBAN", "GB82WEST12345698765432")]
    assert redactor.find("GB82WEST12345698765433") == []
    assert redactor.find("DE89 3704 0044 0532 0130 01") == []


def test_grouped_iban_does_not_swallow_the_next_word(redactor: PiiRedactor) -> None:
    assert spans_of(redactor, "BE68 5390 0754 7034 from Bob") == [("IBAN", "BE68 5390 0754 7034")]


def test_reference_context_is_overridden_by_a_phone_word(redactor: PiiRedactor) -> None:
    assert spans_of(redactor, "order 12 arrived, call 2025550143") == [("PHONE", "2025550143")]


def test_phone_extension_is_kept_as_context(redactor: PiiRedactor) -> None:
    assert redactor.redact("call 202-555-0148 ext 12") == "call <PHONE> ext 12"


def test_empty_and_whitespace(redactor: PiiRedactor) -> None:
    assert redactor.find("") == []
    assert redactor.redact("") == ""
    assert redactor.redact_with_counts("   ") == ("   ", Counter())


def test_unicode_text_keeps_character_offsets(redactor: PiiRedactor) -> None:
    text = "Zażółć 😡 日本 paweł@przykład.pl ☎ +33 1 99 00 12 34"
    assert spans_of(redactor, text) == [("EMAIL", "paweł@przykład.pl"), ("PHONE", "+33 1 99 00 12 34")]
    assert redactor.redact(text) == "Zażółć 😡 日本 <EMAIL> ☎ <PHONE>"


def test_kinds_restricts_builtins_but_custom_patterns_still_run() -> None:
    redactor = PiiRedactor(kinds=["email"], custom_patterns=[CustomPattern("ticket", r"TCK-\d+")])
    assert redactor.kinds == ("EMAIL",)
    assert redactor.redact("a@example.com 4111111111111111 TCK-42") == "<EMAIL> 4111111111111111 <TICKET>"


def test_kinds_accepts_a_single_string() -> None:
    assert PiiRedactor(kinds="ip").kinds == ("IP",)


def test_custom_pattern_without_any_trigger_character() -> None:
    redactor = PiiRedactor(custom_patterns=[CustomPattern("Codename", r"\bProject [A-Z][a-z]+\b")])
    assert redactor.redact_with_counts("about Project Falcon") == (
        "about <CODENAME>",
        Counter({"CODENAME": 1}),
    )


def test_phone_regions_decide_national_numbers() -> None:
    us_only = PiiRedactor(phone_regions=["US"])
    assert us_only.find("ring 020 7946 0321") == []
    assert spans_of(us_only, "ring +44 20 7946 0321") == [("PHONE", "+44 20 7946 0321")]


def test_no_phone_regions_disables_national_phone_lookup() -> None:
    assert PiiRedactor(phone_regions=()).find("+44 20 7946 0958") == []


def test_invalid_custom_regex_names_the_pattern_and_why() -> None:
    with pytest.raises(PiiConfigError, match=r"'order_id'.*does not compile") as info:
        PiiRedactor(custom_patterns=[CustomPattern("order_id", r"ORD-(\d+")])
    err = info.value
    assert err.code == "pii_config_invalid"
    assert err.details["name"] == "order_id"
    assert err.details["pattern"] == r"ORD-(\d+"
    assert "missing )" in err.details["reason"]


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ([CustomPattern("x", "a*")], "empty string"),
        ([CustomPattern("1bad", "abc")], "must be a letter"),
        ([CustomPattern("has space", "abc")], "must be a letter"),
        ([CustomPattern("email", "abc")], "built-in kind EMAIL"),
        ([CustomPattern("dup", "a"), CustomPattern("DUP", "b")], "used twice"),
    ],
)
def test_bad_custom_pattern_configs(patterns: list[CustomPattern], message: str) -> None:
    with pytest.raises(PiiConfigError, match=message):
        PiiRedactor(custom_patterns=patterns)


def test_unknown_kind_and_region_are_config_errors() -> None:
    with pytest.raises(PiiConfigError, match="unknown PII kind"):
        PiiRedactor(kinds=["EMAIL", "SSN"])
    with pytest.raises(PiiConfigError, match="unknown phone region"):
        PiiRedactor(phone_regions=["UK"])


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 50_000,
        "a" * 100_000 + "@",
        "ab:" * 30_000,
        "1." * 50_000,
        "http://" + "a" * 100_000,
        "GB82 " * 20_000,
    ],
)
def test_adversarial_long_input_stays_fast(redactor: PiiRedactor, text: str) -> None:
    start = time.perf_counter()
    redactor.find(text)
    assert time.perf_counter() - start < 2.0


def test_builtin_kinds_are_the_documented_set() -> None:
    assert set(BUILTIN_KINDS) == {"EMAIL", "PHONE", "CARD", "IBAN", "IP", "CREDENTIALS"}


def test_value_objects_are_frozen() -> None:
    span = PiiSpan("EMAIL", 0, 3)
    with pytest.raises(AttributeError):
        span.start = 1  # type: ignore[misc]
    pattern = CustomPattern("a", "b")
    with pytest.raises(AttributeError):
        pattern.name = "c"  # type: ignore[misc]
